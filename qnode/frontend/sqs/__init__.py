"""The SQS-compatible HTTP gateway: AWS JSON 1.0 and query/XML protocols over one aiohttp app.

Layout (one job per module):
- `urls`      queue URLs and ARNs, and back to queue names;
- `sigv4`     sans-IO AWS Signature Version 4 verification;
- `errors`    how a `QnodeError` is reported on each protocol (code, status, fault side);
- `messages`  body character set, message attributes, attribute-name selection;
- `query`     query protocol: form parameters in, XML out, shaped like the JSON protocol;
- `actions`   the 23 SQS actions, as JSON-shaped dict in -> dict out over a `QueueApi`;
- `app`       the aiohttp request handler that ties them together.

Rule: the gateway never keeps queue state; every action does its work through `QueueApi`.
"""
