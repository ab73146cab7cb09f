"""The analytics dashboard in the browser: ``/dashboard`` on ``fiml serve --http`` for
admins who log in with their token, and ``fiml dashboard`` for the local user.

:mod:`~fiml.dashboard.app` has the routes and who is let in, :mod:`~fiml.dashboard.auth`
the login's signed cookie, :mod:`~fiml.dashboard.page` the HTML, :mod:`~fiml.dashboard.svg`
the charts and :mod:`~fiml.dashboard.local` the local server. The figures come from
:class:`~fiml.sessions.analytics.SessionAnalytics` (``get_session_stats`` and
``get_session_series``).
"""

from fiml.dashboard.app import add_dashboard

__all__ = ["add_dashboard"]
