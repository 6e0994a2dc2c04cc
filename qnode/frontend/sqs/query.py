"""The SQS query protocol (form-encoded `Action=...&Version=2012-11-05`, XML replies), mapped
onto the JSON protocol's shapes so that `actions` sees one input format and produces one output.

In:  `Attribute.1.Name=A&Attribute.1.Value=v` -> `{"Attributes": {"A": "v"}}`;
     `SendMessageBatchRequestEntry.2.Id=x` -> `{"Entries": [_, {"Id": "x"}]}`;
     `MessageAttribute.1.Value.DataType=String` -> `{"MessageAttributes": {...}}` etc.
Out: a JSON-shaped result dict rendered as `<ActionResponse xmlns=...><ActionResult>...`,
     maps as `<Attribute><Name/><Value/></Attribute>` (or `<Tag><Key/><Value/>`), lists
     flattened under their member names, as the 2012-11-05 query API does.
Bounded: at most `PARAMS_COUNT_MAX` parameters and list indexes up to `INDEX_MAX`; more is
InvalidParameterValue. Pure functions.
"""

from __future__ import annotations

from typing import Any, Iterable
from xml.sax.saxutils import escape

from qnode.frontend.sqs.errors import XMLNS
from qnode.protocol.errors import InvalidParameter

PARAMS_COUNT_MAX = 2_000
INDEX_MAX = 1_000

# query member name -> (JSON member name, kind); kinds: list, map (Name/Value), tags (Key/Value),
# mattrs (Name/Value{DataType,StringValue,BinaryValue}), entries (list of nested structures).
_MEMBERS: dict[str, tuple[str, str]] = {
    "Attribute": ("Attributes", "map"),
    "Tag": ("Tags", "tags"),
    "AttributeName": ("AttributeNames", "list"),
    "MessageAttributeName": ("MessageAttributeNames", "list"),
    "MessageSystemAttributeName": ("MessageSystemAttributeNames", "list"),
    "MessageAttribute": ("MessageAttributes", "mattrs"),
    "MessageSystemAttribute": ("MessageSystemAttributes", "mattrs"),
    "SendMessageBatchRequestEntry": ("Entries", "entries"),
    "DeleteMessageBatchRequestEntry": ("Entries", "entries"),
    "ChangeMessageVisibilityBatchRequestEntry": ("Entries", "entries"),
    "TagKey": ("TagKeys", "list"),
    "AWSAccountId": ("AWSAccountIds", "list"),
    "ActionName": ("Actions", "list"),
}


def _tree(pairs: Iterable[tuple[str, str]]) -> dict:
    root: dict = {}
    count = 0
    for key, value in pairs:
        count += 1
        if count > PARAMS_COUNT_MAX:
            raise InvalidParameter(f"More than {PARAMS_COUNT_MAX} request parameters.")
        node = root
        parts = key.split(".")
        for i, part in enumerate(parts):
            slot: Any = part
            if part.isdigit():
                slot = int(part)
                if not 1 <= slot <= INDEX_MAX:
                    raise InvalidParameter(f"Parameter {key} has an invalid index.")
            if i == len(parts) - 1:
                node[slot] = value
            else:
                child = node.setdefault(slot, {})
                if not isinstance(child, dict):
                    raise InvalidParameter(f"Parameter {key} conflicts with another parameter.")
                node = child
    return root


def _indexed(node: Any) -> list:
    if isinstance(node, dict):
        return [node[k] for k in sorted(k for k in node if isinstance(k, int))]
    return [node]


def _convert(node: dict) -> dict:
    out: dict = {}
    for key, value in node.items():
        if not isinstance(key, str):
            continue
        name, kind = _MEMBERS.get(key, (key, "scalar"))
        if kind == "scalar":
            out[name] = _convert(value) if isinstance(value, dict) else value
        elif kind == "list":
            out[name] = [v for v in _indexed(value) if isinstance(v, str)]
        elif kind in ("map", "tags"):
            k_field, v_field = ("Name", "Value") if kind == "map" else ("Key", "Value")
            out[name] = {e.get(k_field): e.get(v_field, "") for e in _indexed(value)
                         if isinstance(e, dict) and isinstance(e.get(k_field), str)}
        elif kind == "mattrs":
            attrs: dict = {}
            for e in _indexed(value):
                if isinstance(e, dict) and isinstance(e.get("Name"), str):
                    v = e.get("Value")
                    attrs[e["Name"]] = _convert(v) if isinstance(v, dict) else {}
            out[name] = attrs
        elif kind == "entries":
            out[name] = [_convert(e) if isinstance(e, dict) else {} for e in _indexed(value)]
        else:
            raise AssertionError(kind)
    return out


def parse_params(pairs: Iterable[tuple[str, str]]) -> dict:
    """Flattened query parameters to the JSON protocol's input shape. `Action`/`Version` kept."""
    return _convert(_tree(pairs))


# --- output ------------------------------------------------------------------------------------

_ENTRY_NAMES = {
    "SendMessageBatch": "SendMessageBatchResultEntry",
    "DeleteMessageBatch": "DeleteMessageBatchResultEntry",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibilityBatchResultEntry",
}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    # \r would be normalised to \n by XML parsers; a character reference survives.
    return escape(str(value)).replace("\r", "&#13;")


def _elem(tag: str, value: Any) -> str:
    return f"<{tag}>{_text(value)}</{tag}>"


def _mattrs(attrs: dict) -> str:
    parts = []
    for name, v in attrs.items():
        inner = "".join(_elem(k, v[k]) for k in ("StringValue", "BinaryValue", "DataType") if k in v)
        parts.append(f"<MessageAttribute>{_elem('Name', name)}<Value>{inner}</Value>"
                     "</MessageAttribute>")
    return "".join(parts)


def _fields(obj: dict, action: str) -> str:
    parts: list[str] = []
    for key, value in obj.items():
        if value is None:
            continue
        if key == "Attributes":
            parts.extend(f"<Attribute>{_elem('Name', k)}{_elem('Value', v)}</Attribute>"
                         for k, v in value.items())
        elif key == "Tags":
            parts.extend(f"<Tag>{_elem('Key', k)}{_elem('Value', v)}</Tag>"
                         for k, v in value.items())
        elif key in ("QueueUrls", "queueUrls"):
            parts.extend(_elem("QueueUrl", u) for u in value)
        elif key == "MessageAttributes":
            parts.append(_mattrs(value))
        elif key == "Messages":
            parts.extend(f"<Message>{_fields(m, action)}</Message>" for m in value)
        elif key == "Successful":
            tag = _ENTRY_NAMES[action]
            parts.extend(f"<{tag}>{_fields(e, action)}</{tag}>" for e in value)
        elif key == "Failed":
            parts.extend(f"<BatchResultErrorEntry>{_fields(e, action)}</BatchResultErrorEntry>"
                         for e in value)
        elif key == "Results":
            tag = "ListMessageMoveTasksResultEntry"
            parts.extend(f"<{tag}>{_fields(e, action)}</{tag}>" for e in value)
        else:
            parts.append(_elem(key, value))
    return "".join(parts)


def render_xml(action: str, result: dict, request_id: str) -> bytes:
    """`<ActionResponse>` with `<ActionResult>` (omitted when the action returns nothing)."""
    body = _fields(result, action)
    inner = f"<{action}Result>{body}</{action}Result>" if body else ""
    return (f'<?xml version="1.0"?><{action}Response xmlns="{XMLNS}">{inner}'
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
            f"</{action}Response>").encode()
