"""How a tool's reply goes on the wire: compact JSON, numbers as precise as they mean.

A model reads every byte of a reply, and an MCP client receives each result twice: as
``structuredContent`` and, for clients that read text only, as the same JSON in a text
block. The SDK's default text block is that JSON indented; :func:`reply` writes it
compact (``,`` and ``:`` separators, no indentation), and for a tracked search, whose
reply has a budget (:data:`REPLY_BUDGET_BYTES`), leaves out the fields that are null.

Numbers are rounded where they are made (the ``Rounded*`` types, and
:func:`quoted_price` for prices), so the text and the structured content agree: a
duration measured as 0.41234567891234 ms says nothing more than 0.41 ms.
"""

from __future__ import annotations

import math
from typing import Annotated

import pydantic_core
from mcp.types import CallToolResult, TextContent
from pydantic import AfterValidator, BaseModel

__all__ = [
    "REPLY_BUDGET_BYTES",
    "Milliseconds",
    "Ratio",
    "Rounded2",
    "Seconds",
    "crypto_decimals",
    "equity_decimals",
    "quoted_price",
    "reply",
    "reply_bytes",
    "sized_reply",
]


REPLY_BUDGET_BYTES = 800
"""The most a tracked search's default reply may take (issue 15), text and structure together."""


def _rounder(decimals: int) -> AfterValidator:
    return AfterValidator(lambda value: round(value, decimals))


Milliseconds = Annotated[float, _rounder(2)]
"""A duration in ms: timer jitter makes anything past 10 µs noise."""
Seconds = Annotated[float, _rounder(0)]
"""A span in whole seconds (a session's remaining time, a mean session duration)."""
Ratio = Annotated[float, _rounder(4)]
"""A share between 0 and 1, to a hundredth of a percent."""
Rounded2 = Annotated[float, _rounder(2)]
"""A mean or a percentage, to two decimals."""


def equity_decimals(price: float) -> int:
    """Decimals a stock quotes in: cents from $1 up, hundredths of a cent below.

    These are the ticks of US equity markets (Reg NMS rule 612: $0.01 at or above $1.00,
    $0.0001 below) and cover the other markets' prices as Yahoo reports them; Yahoo's
    prices are binary floats (175.42999267578125), so the tick is what they mean.
    """
    return 2 if price >= 1 else 4


def crypto_decimals(price: float) -> int:
    """Decimals a coin quotes in: 8 significant digits, never more than 8 decimals.

    Exchanges price coins to 8 decimals at most (Binance's tick sizes), and no pair's
    tick needs more than 8 significant digits, so this keeps every digit a provider
    gives (43250.12, 0.00001234) and drops only float noise from arithmetic on them.
    """
    if price == 0:
        return 2
    return max(0, min(8, 7 - math.floor(math.log10(abs(price)))))


def quoted_price(value: float | None, decimals: int) -> float | None:
    """``value`` to ``decimals`` decimals (``None`` stays ``None``)."""
    return None if value is None else round(value, decimals)


def reply(result: BaseModel, *, omit_null: bool = False) -> CallToolResult:
    """``result`` as a tool's reply: structured content, and the same JSON, compact, as text.

    With ``omit_null`` the fields that are null are left out (the model must give them a
    default, so its schema does not require them). The SDK checks the structured content
    against the tool's output model before sending it (the tool's return annotation
    ``Annotated[CallToolResult, Model]``).
    """
    return sized_reply(result, omit_null=omit_null)[0]


_TEXT_BLOCK_FRAME = len(b'[{"type":"text","text":}]')
"""What the content list adds around its one text block's JSON string."""


def sized_reply(result: BaseModel, *, omit_null: bool = False) -> tuple[CallToolResult, int]:
    """:func:`reply` and its size as :func:`reply_bytes` counts it, from the JSON the reply
    was made of: the structured content's JSON is the text, so it is serialized once and
    the size is that text's length twice over (once as a JSON string), plus the frame."""
    structured = result.model_dump(mode="json", exclude_none=omit_null)
    body = pydantic_core.to_json(structured)
    text = body.decode()
    size = len(body) + len(pydantic_core.to_json(text)) + _TEXT_BLOCK_FRAME
    sent = CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured
    )
    return sent, size


def reply_bytes(result: CallToolResult) -> int:
    """The bytes of a reply's text and structured content as the SDK's transports send them.

    The SDK's own envelope of a result (its ``_meta`` server info, ``isError``,
    ``resultType``: about 150 bytes) is the same for every reply and left out.
    """
    sent = result.model_dump(mode="json", by_alias=True, exclude_unset=True)
    content = pydantic_core.to_json(sent.get("content", []))
    structured = pydantic_core.to_json(sent.get("structuredContent"))
    return len(content) + len(structured)
