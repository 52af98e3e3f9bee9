"""moto's standalone server with Glue's optimistic locking, as AWS has it: ``UpdateTable`` with a
``VersionId`` that is not the table's current version fails with ConcurrentModificationException.
moto 5.2 accepts the VersionId and ignores it, so two writers committing to one table at once would
both "win" there, never on AWS. Run as ``python -m tests.moto_glue -H 127.0.0.1 -p PORT``."""

from __future__ import annotations

from moto.glue import responses
from moto.glue.exceptions import GlueClientError

_update_table = responses.GlueResponse.update_table


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
