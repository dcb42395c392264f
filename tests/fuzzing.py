"""Fuzzing helpers: hypothesis profiles (small and fixed in `make test`, HYPOTHESIS_PROFILE=deep in `make fuzz`)
and raw PDF builders for files no PDF library would write."""

from __future__ import annotations

import os
import zlib

from hypothesis import HealthCheck, settings

# default: derandomized, so `make test` runs the same examples every time and cannot fail at random.
# deep: fresh random examples, DEEP_FACTOR times as many; a failure prints the example and a @reproduce_failure line.
DEEP_FACTOR = 10
settings.register_profile(
    "default",
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "deep",
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.load_profile(PROFILE)


def examples(n: int) -> settings:
    """n examples in the default profile, DEEP_FACTOR * n in the deep one."""
    return settings(max_examples=n * (DEEP_FACTOR if PROFILE == "deep" else 1))


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF from numbered object bodies (object 1 is the catalog), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def stream(data: bytes, *, deflate: bool = False) -> bytes:
    """A PDF stream object, deflated or not."""
    body = zlib.compress(data, 9) if deflate else data
    flate = b" /Filter /FlateDecode" if deflate else b""
    return b"<< /Length %d%s >>\nstream\n" % (len(body), flate) + body + b"\nendstream"


FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def page(parent: int, contents: int, font: int, extra: bytes = b"") -> bytes:
    """A page object: its parent, its content stream and its font by object number; extra goes in /Resources."""
    return b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R " % (parent, contents) + (
        b"/Resources << /Font << /F1 %d 0 R >> %s >> >>" % (font, extra)
    )


def hello_pdf(text: bytes = b"Hello from a small PDF.") -> bytes:
    """A one-page PDF showing text."""
    content = stream(b"BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text)
    catalog, pages = b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
    return raw_pdf([catalog, pages, page(2, 4, 5), content, FONT])
