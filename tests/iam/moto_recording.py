"""moto server with its request recorder on, for the IAM check of
tests/all/iam_recorded.rs: every request the suite sends is appended to
MOTO_RECORDER_FILEPATH. Bodies over 64 KiB (plugin uploads) are left out:
the check needs an S3 call's method and key, not its bytes."""
import io
import sys

from moto.moto_api._internal.recorder import models

_encode = models.Recorder._encode_body
LIMIT = 64 << 10


def _small(self, body):
    if isinstance(body, io.BytesIO):
        body = body.getvalue()
    if isinstance(body, (bytes, str)) and len(body) > LIMIT:
        return "", False
    return _encode(self, body)


models.Recorder._encode_body = _small

from moto.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
