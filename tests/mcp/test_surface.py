"""What a client sees before calling anything: tools, schemas, annotations, the resource."""

from __future__ import annotations

from fiml.sessions.models import SessionType
from tests.mcp.conftest import Connect

SESSION_TOOLS = {
    "create-analysis-session",
    "get-session-info",
    "list-sessions",
    "search-sessions",
    "extend-session",
    "close-analysis-session",
    "get-session-history",
    "update-session-context",
    "get-session-analytics",
}
SHARING_TOOLS = {"share-session", "unshare-session", "list-shared-sessions"}
TEMPLATE_TOOLS = {"save-session-template", "list-session-templates"}
SEARCH_TOOLS = {"search-by-symbol", "search-by-coin"}
TIMELINE_TOOLS = {"get-session-timeline", "fork-session"}
READ_ONLY = {
    "get-session-info",
    "list-sessions",
    "search-sessions",
    "get-session-history",
    "get-session-analytics",
    "list-shared-sessions",
    "list-session-templates",
    "get-session-timeline",
}


async def test_every_tool_is_listed_with_input_and_output_schemas(connect: Connect) -> None:
    async with connect("alice") as alice:
        tools = {tool.name: tool for tool in (await alice.list_tools()).tools}

        assert set(tools) == (
            SESSION_TOOLS | SHARING_TOOLS | TEMPLATE_TOOLS | SEARCH_TOOLS | TIMELINE_TOOLS
        )
        for tool in tools.values():
            assert tool.description, tool.name
            assert tool.input_schema["type"] == "object"
            assert tool.output_schema is not None and tool.output_schema["type"] == "object"


async def test_read_only_annotations_mark_exactly_the_tools_that_change_nothing(
    connect: Connect,
) -> None:
    async with connect("alice") as alice:
        tools = (await alice.list_tools()).tools

        marked = {t.name for t in tools if t.annotations and t.annotations.read_only_hint}

        assert marked == READ_ONLY


async def test_input_schemas_tell_clients_what_is_allowed(connect: Connect) -> None:
    async with connect("alice") as alice:
        tools = {tool.name: tool for tool in (await alice.list_tools()).tools}

        create = tools["create-analysis-session"].input_schema
        search = tools["search-by-symbol"].input_schema

        # assets and session_type may come from a template instead (checked by the tool)
        assert "required" not in create
        assert set(create["properties"]) == {
            "assets",
            "session_type",
            "ttl_hours",
            "tags",
            "template",
        }
        assert create["properties"]["session_type"]["enum"] == [
            *(t.value for t in SessionType),
            None,
        ]
        assert create["properties"]["assets"]["maxItems"] == 50
        assert search["required"] == ["symbol"]
        assert search["properties"]["session_id"]["format"] == "uuid"
        assert "user" not in str(create) and "user_id" not in search["properties"]


async def test_no_tool_but_admin_analytics_takes_a_user_argument(connect: Connect) -> None:
    async with connect("alice") as alice:
        tools = (await alice.list_tools()).tools

        taking_a_user = {t.name for t in tools if "user_id" in t.input_schema["properties"]}

        # The sharing tools' user_id names the reader, never who is calling.
        assert taking_a_user == {"get-session-analytics", "share-session", "unshare-session"}


async def test_sessions_are_a_resource_template(connect: Connect) -> None:
    async with connect("alice") as alice:
        templates = (await alice.list_resource_templates()).resource_templates

        assert [(t.uri_template, t.mime_type) for t in templates] == [
            ("session://{session_id}", "application/json")
        ]
