"""The streaming protocols, pure: channel frames of exec/attach/port-forward,
the Status that carries an exit code, SPDY/3.1 frames and header blocks, and
the pieces of the agent's log serving that are pure."""

from __future__ import annotations

import datetime
import json
import zlib

import pytest

from netplane.api import streams
from netplane.api.streams import Channel, Frame, TerminalSize
from netplane.node import podlogs, spdy


def test_channel_frames_round_trip() -> None:
    assert streams.encode(Channel.STDOUT, b"hi") == b"\x01hi"
    assert streams.decode(b"\x02oops") == Frame(2, b"oops")
    assert streams.decode(b"\x01") == Frame(1, b"")
    assert streams.close_frame(Channel.STDIN) == b"\xff\x00"
    with pytest.raises(ValueError):
        streams.decode(b"")


def test_resize_is_json_with_width_and_height() -> None:
    frame = streams.decode(streams.resize_frame(TerminalSize(width=120, height=30)))
    assert frame.channel == Channel.RESIZE
    assert json.loads(frame.data) == {"Width": 120, "Height": 30}
    assert streams.parse_resize(frame.data) == TerminalSize(120, 30)


def test_exit_status_as_kube_sends_it() -> None:
    assert streams.exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    assert streams.exit_status(3, ["sh", "-c", "exit 3"]) == {
        "metadata": {}, "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
                   "[sh -c exit 3], exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}


@pytest.mark.parametrize(("status", "code"), [
    ({"metadata": {}, "status": "Success"}, 0),
    (streams.exit_status(42, ["x"]), 42),
    (streams.error_status("no such container"), 1),
    ({"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": []}}, 1),
])
def test_exit_code_from_a_status(status: dict[str, object], code: int) -> None:
    assert streams.exit_code(status) == code


def test_port_forward_prefix_and_ports() -> None:
    assert streams.port_prefix(8080) == b"\x90\x1f"
    assert streams.parse_ports(["8080,9090", "53"]) == [8080, 9090, 53]
    for bad in (["0"], ["70000"], ["x"], []):
        with pytest.raises(ValueError):
            streams.parse_ports(bad)


def test_spdy_dictionary_is_the_protocols() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    # The dictionary id a peer's zlib stream names (its Adler-32).
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def test_spdy_frames_round_trip_through_one_compression_context() -> None:
    writer, reader = spdy.Writer(), spdy.Reader()
    frames: list[spdy.Frame] = [
        spdy.SynStream(1, {"streamtype": "error", "port": "8080", "requestid": "0"}),
        spdy.SynStream(3, {"streamtype": "data", "port": "8080", "requestid": "0"}, fin=False),
        spdy.SynReply(1), spdy.Headers(3, {"x": "y"}),
        spdy.Data(3, b"GET / HTTP/1.0\r\n\r\n", fin=True), spdy.Data(1, b"", fin=True),
        spdy.RstStream(3, spdy.RstStatus.CANCEL), spdy.Settings({7: 65536}),
        spdy.Ping(1), spdy.GoAway(3), spdy.WindowUpdate(3, 1000)]
    wire = b"".join(writer.encode(f) for f in frames)
    # Fed in awkward pieces, as a WebSocket tunnel may deliver them.
    got: list[spdy.Frame] = []
    for i in range(0, len(wire), 7):
        got += reader.feed(wire[i:i + 7])
    assert got == frames


def test_spdy_control_frame_layout() -> None:
    raw = spdy.Writer().encode(spdy.Ping(7))
    assert raw == b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"
    data = spdy.Writer().encode(spdy.Data(5, b"ab", fin=True))
    assert data == b"\x00\x00\x00\x05\x01\x00\x00\x02ab"


def test_spdy_header_block_layout() -> None:
    block = spdy.encode_header_block({"Port": "80"})
    assert block == b"\x00\x00\x00\x01\x00\x00\x00\x04port\x00\x00\x00\x0280"
    assert spdy.decode_header_block(block) == {"port": "80"}
    with pytest.raises(spdy.ProtocolError):
        spdy.decode_header_block(b"\x00\x00\x00\x02\x00")


def test_spdy_rejects_another_version() -> None:
    with pytest.raises(spdy.ProtocolError):
        spdy.Reader().feed(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")


def test_log_options_are_parsed_and_checked() -> None:
    opts = podlogs.parse_options({"follow": "true", "tailLines": "5", "limitBytes": "10",
                                  "timestamps": "1"})
    assert opts == podlogs.LogOptions(follow=True, tail_lines=5, limit_bytes=10,
                                      timestamps=True)
    recent = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=90)
    since = podlogs.parse_options({"sinceTime": recent.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert since.since_seconds is not None and 89 <= since.since_seconds <= 92
    for bad in ({"tailLines": "x"}, {"limitBytes": "0"}, {"sinceSeconds": "-1"},
                {"sinceTime": "yesterday"}):
        with pytest.raises(podlogs.BadLogOptions):
            podlogs.parse_options(bad)


def test_tail_stamp_and_limit() -> None:
    assert podlogs.tail(b"a\nb\nc", 2) == b"b\nc"
    assert podlogs.tail(b"a\nb\n", 0) == b""
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.UTC)
    text, ended = podlogs.stamp(b"a\nb", when, at_line_start=True)
    assert text == b"2026-01-02T03:04:05.006000Z a\n2026-01-02T03:04:05.006000Z b"
    assert not ended
    assert podlogs.stamp(b"c\n", when, at_line_start=False) == (b"c\n", True)
    limit = podlogs.Limit(3)
    assert (limit.take(b"ab"), limit.take(b"cd"), limit.spent) == (b"ab", b"c", True)
