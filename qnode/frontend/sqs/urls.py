"""Queue URLs and ARNs: `http://<host>/<account-id>/<queue-name>` and
`arn:aws:sqs:<region>:<account-id>:<queue-name>`, and back to queue names.

The host part of a URL is whatever Host header the client used, so a URL handed out always
points back at the endpoint the client reached. Parsing accepts any scheme/host (clients may
reach us through a proxy) but refuses another account's queue with QueueDoesNotExist.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from qnode.protocol.errors import InvalidParameter, MissingParameter, QueueDoesNotExist


def queue_url(scheme: str, host: str, account_id: str, name: str) -> str:
    return f"{scheme}://{host}/{account_id}/{name}"


def queue_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:sqs:{region}:{account_id}:{name}"


def name_from_url(url: str | None, account_id: str) -> str:
    """The queue name in a queue URL (or a bare `/<account>/<name>` path).

    Raises MissingParameter (no URL), QueueDoesNotExist (another account, or not a queue URL).
    """
    if not url:
        raise MissingParameter("The request must contain the parameter QueueUrl.")
    path = urlsplit(url).path if "://" in url else url
    parts = [p for p in path.split("/") if p]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2 and parts[0] == account_id:
        return parts[1]
    raise QueueDoesNotExist("The specified queue does not exist.")


def name_from_arn(arn: str, account_id: str) -> str:
    """The queue name in an SQS ARN of this account. Raises InvalidParameter otherwise."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        raise InvalidParameter(f"Value {arn} for parameter SourceArn is invalid.")
    if parts[4] != account_id:
        raise QueueDoesNotExist("The specified queue does not exist.")
    return parts[5]
