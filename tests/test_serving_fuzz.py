"""Property: every malformed prediction request gets a protocol answer with err_no != 0, and the server lives on.

Hypothesis generates at least 500 bad requests (derandomized, so CI runs the same ones):
bytes that are not JSON, JSON that is not an object, unknown fields, wrong types,
key/value lists that do not pair up, keys the op does not take, invalid base64, and
base64 of bytes that no image decoder accepts (a JPEG start marker followed by garbage,
or random bytes). They go over real HTTP to the app on a fake backend; a normal request
and ``/health`` must still work afterwards.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.serving import FakeBackend, FakeServers, b64, make_jpeg, request_body

URL = "/imagenet/prediction"
EXAMPLES = 600
FIELDS = {"err_no", "err_msg", "key", "value", "tensors"}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
garbage_images = (st.binary(max_size=200).map(lambda b: b"\xff\xd8\xff" + b)
                  | st.binary(min_size=1, max_size=200).filter(lambda b: not b.startswith((b"P", b"BM", b"GIF"))))
not_base64 = st.text(alphabet=string.punctuation.replace("+", "").replace("/", "").replace("=", "")
                     .replace("-", "").replace("_", ""), min_size=1, max_size=40)


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


bad_requests = st.one_of(
    # not JSON (a JSON document is text starting with one of these)
    st.binary(max_size=300).filter(lambda b: not b.strip()[:1] or b.strip()[:1] not in b'{["-0123456789tfn'),
    # JSON, but not an object
    st.one_of(st.lists(json_values, max_size=4), json_scalars).map(_dumps),
    # an object with an unknown field
    st.dictionaries(st.text(min_size=1, max_size=10).filter(
        lambda k: k not in ("key", "value", "tensors", "logid", "clientip", "name", "method")),
        json_values, min_size=1, max_size=3).map(_dumps),
    # key/value of the wrong JSON type
    st.builds(lambda k, v: _dumps({"key": k, "value": v}), json_values.filter(lambda x: not isinstance(x, list)),
              json_values),
    # lists that do not pair up
    st.integers(0, 5).flatmap(lambda n: st.integers(0, 5).filter(lambda m: m != n).map(
        lambda m: _dumps({"key": ["image"] * n, "value": ["eA=="] * m}))),
    # a key the op does not take
    st.text(min_size=1, max_size=12).filter(lambda k: not k.startswith("image") and k != "pipeline.profile").map(
        lambda k: _dumps({"key": [k], "value": ["eA=="]})),
    # invalid base64
    not_base64.map(lambda v: _dumps({"key": ["image"], "value": [v]})),
    # valid base64 of bytes that are not an image
    garbage_images.map(lambda b: _dumps({"key": ["image"], "value": [base64.b64encode(b).decode()]})),
    # a good image next to a bad one fails the whole request
    garbage_images.map(lambda b: _dumps(request_body([b64(make_jpeg()), base64.b64encode(b).decode()]))),
    # logid of the wrong type
    st.one_of(st.text(alphabet=string.ascii_letters, min_size=1, max_size=8), st.lists(st.integers(), max_size=2),
              st.booleans()).map(lambda logid: _dumps({"key": ["image"], "value": [b64(make_jpeg())], "logid": logid})),
)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with FakeServers() as servers:
        url, _, _ = servers.start(FakeBackend(), auto_batching_timeout=0)
        yield url


@pytest.mark.slow
def test_500_bad_requests_are_answered_and_the_server_lives(server: str) -> None:
    sent: list[int] = []
    with httpx.Client(base_url=server, timeout=30) as http:

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(body=bad_requests)
        def answered_with_an_error(body: bytes) -> None:
            reply = http.post(URL, content=body)
            assert reply.status_code in (200, 413), reply.text
            payload = reply.json()
            assert set(payload) == FIELDS, payload
            assert payload["err_no"] != 0, (body[:200], payload)
            assert payload["key"] == [] and payload["value"] == []
            sent.append(payload["err_no"])

        answered_with_an_error()
        assert http.get("/health").status_code == 200
        good = http.post(URL, content=json.dumps(request_body([b64(make_jpeg())]))).json()
    assert good["err_no"] == 0, good
    assert len(sent) >= 500, len(sent)
