"""moto's standalone server with Glue's optimistic locking, as AWS has it: ``UpdateTable`` with a
``VersionId`` that is not the table's current version fails with ConcurrentModificationException.
moto 5.2 accepts the VersionId and ignores it, so two writers committing to one table at once would
both "win" there, never on AWS.

And its S3 and Glue writes made atomic, as AWS's are: moto's threaded server checks a conditional
PUT's ``If-Match`` / ``If-None-Match`` (or Glue's ``VersionId``) and then writes, with nothing
between the two, so two requests at once could both pass the check, which AWS never lets happen.
Every PUT, DELETE, copy and multipart completion of an object, and every Glue table update, goes
one at a time here. (The lock race the tests found was stedi's own, fixed in stedi.locks: this
only keeps moto from adding one of its own.)

Run as ``python -m tests.moto_glue -H 127.0.0.1 -p PORT``."""

from __future__ import annotations

import functools
import threading

from moto.glue import responses
from moto.glue.exceptions import GlueClientError
from moto.s3.responses import S3Response

_ONE_AT_A_TIME = threading.RLock()


def _atomic(method):  # noqa: ANN001, ANN202
    @functools.wraps(method)
    def one_at_a_time(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        with _ONE_AT_A_TIME:
            return method(*args, **kwargs)

    return one_at_a_time


for _name in ("put_object", "delete_object", "_key_response_post", "copy_object"):
    setattr(S3Response, _name, _atomic(getattr(S3Response, _name)))

_update_table = responses.GlueResponse.update_table


@_atomic
def update_table(self):  # noqa: ANN001, ANN201 — moto's own signature
    version = self.parameters.get("VersionId")
    if version is not None:
        table_input = self.parameters.get("TableInput") or {}
        table = self.glue_backend.get_table(self.parameters.get("DatabaseName"), table_input.get("Name"))
        if str(version) != str(table._current_version):
            raise GlueClientError(
                "ConcurrentModificationException", f"Update table failed due to concurrent modifications (version {version})"
            )
    return _update_table(self)


responses.GlueResponse.update_table = update_table

if __name__ == "__main__":
    from moto.server import main

    main()
