"""The channel protocol of Kubernetes' streaming subresources (exec, attach,
port-forward over WebSocket), shared by the agent that serves it and the CLI
that speaks it. Pure: bytes in, bytes out.

Every binary WebSocket message is one frame: a channel byte, then data.
Exec and attach use channels 0 stdin, 1 stdout, 2 stderr, 3 error (a
``Status`` as JSON, which carries the exit code), 4 resize (JSON
``{"Width": W, "Height": H}``); ``v5`` adds 255 "close": its one data byte
names a channel the sender will write no more to (the end of stdin).
Port-forward gives port *i* the channels 2i (data) and 2i+1 (error); the
server's first message on each of them is the port, 2 bytes little-endian.
"""

from __future__ import annotations

import enum
import json
import shlex
import struct
from dataclasses import dataclass
from typing import Any

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
# Exec/attach protocols the agent serves, best first; both send a Status on
# the error channel, only v5 can say that stdin ended.
EXEC_PROTOCOLS = (V5, V4)
PORT_FORWARD_PROTOCOLS = (V4,)
# kubectl tunnels SPDY/3.1 through a WebSocket for port-forward.
SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"
NON_ZERO_EXIT = "NonZeroExitCode"


class Channel(enum.IntEnum):
    STDIN = 0
    STDOUT = 1
    STDERR = 2
    ERROR = 3
    RESIZE = 4
    CLOSE = 255


@dataclass(frozen=True)
class Frame:
    channel: int
    data: bytes


def encode(channel: int, data: bytes = b"") -> bytes:
    return bytes((channel,)) + data


def decode(message: bytes) -> Frame:
    if not message:
        raise ValueError("an empty message has no channel byte")
    return Frame(message[0], message[1:])


def close_frame(channel: int) -> bytes:
    """v5: the sender writes no more to ``channel``."""
    return encode(Channel.CLOSE, bytes((channel,)))


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


def resize_frame(size: TerminalSize) -> bytes:
    return encode(Channel.RESIZE, json.dumps({"Width": size.width,
                                              "Height": size.height}).encode())


def parse_resize(data: bytes) -> TerminalSize:
    body = json.loads(data)
    return TerminalSize(int(body.get("Width", 0)), int(body.get("Height", 0)))


def _go_list(command: list[str]) -> str:
    """A command as kube's messages print it: ``[sh -c exit 3]``."""
    return "[" + " ".join(command) + "]"


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    """The ``Status`` the error channel carries when a command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing "
                       f"command {_go_list(command)}, exit code {code}",
            "reason": NON_ZERO_EXIT,
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def error_status(message: str) -> dict[str, Any]:
    """A failure that is not an exit code (the command could not start...)."""
    return {"metadata": {}, "status": "Failure", "message": message}


def exit_code(status: dict[str, Any]) -> int:
    """The exit code a client reports for a Status from the error channel:
    0 on success, the ExitCode cause on a non-zero exit, else 1."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == NON_ZERO_EXIT:
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
                return int(cause["message"])
    return 1


def port_prefix(port: int) -> bytes:
    return struct.pack("<H", port)


def parse_ports(values: list[str]) -> list[int]:
    """``ports=8080,9090`` (possibly repeated) as port numbers; ValueError if bad."""
    ports: list[int] = []
    for value in values:
        for part in value.split(","):
            port = int(part)
            if not 0 < port < 65536:
                raise ValueError(f"port {part} is out of range 1-65535")
            ports.append(port)
    if not ports:
        raise ValueError("no ports given (the ports query parameter)")
    return ports


def describe(command: list[str]) -> str:
    return shlex.join(command)
