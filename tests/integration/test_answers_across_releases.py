"""Answers after an upgrade: never one that an older server shaped (issue 17's review).

The response cache outlives a server run (its keys carry the data version), and clients keep
ETags. Both also carry the release of the server that made the answer (RELEASE_KEY in
server/responses.py: the answers' revision, the package version and the image's source
revision), so a new server with a new answer shape neither reads an old cache row nor says 304
to an old ETag. Shown with a cache row planted under the older release's key.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from appliance.data.run_layout import RunFolders
from server.cache import ResponseCache
from tests.conftest import Signer, import_into
from tests.integration.live_server import LiveServer, live_server

PATH = "/api/v1/data/current"  # computed once, then answered from the response cache
MARKER = b'{"planted":"by the test, under the older release\'s key"}'


def serve(data_dir: Path, signer: Signer, revision: str) -> AbstractContextManager[LiveServer]:
    return live_server(data_dir, signer.allowed_signers, env={"APPLIANCE_REVISION": revision})


def test_a_new_release_neither_reads_an_older_release_s_cache_nor_says_304_to_its_etag(
    tmp_path: Path, signer: Signer, good_pack: Path
) -> None:
    data_dir = tmp_path / "data"
    import_into(data_dir, good_pack, signer)
    with serve(data_dir, signer, "1111111") as old:
        first = old.get(PATH)
    assert first.status_code == 200, first.text
    etag, vid = first.headers["etag"], first.headers["x-data-version"]

    cache = ResponseCache(RunFolders(data_dir).cache, 256 << 20)
    key = f"{vid}|{etag}"
    assert cache.get(key) == first.content  # the row the older server left, under this key
    cache.set(key, MARKER)

    with serve(data_dir, signer, "1111111") as same:  # the same release reads its own rows
        assert same.get(PATH).content == MARKER
        assert same.get(PATH, headers={"if-none-match": etag}).status_code == 304

    with serve(data_dir, signer, "2222222") as new:
        answer = new.get(PATH)
        assert answer.status_code == 200
        assert answer.content == first.content  # computed again, not the planted row
        assert answer.headers["etag"] != etag
        assert new.get(PATH, headers={"if-none-match": etag}).status_code == 200
        again = new.get(PATH, headers={"if-none-match": answer.headers["etag"]})
        assert again.status_code == 304
