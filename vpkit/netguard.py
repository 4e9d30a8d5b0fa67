"""Refuse network access from Python: every socket connection that is not loopback or a Unix socket fails.

Activated by ``VPKIT_NO_NETWORK=1`` (the test suite sets it for smoke runs) or by calling
:func:`block_network`. Jupyter kernels talk to papermill over loopback, which stays allowed.
"""
from __future__ import annotations

import ipaddress
import os
import socket


class NetworkBlocked(RuntimeError):
    """Raised when code tries to reach the network while the guard is on."""


_ORIG = {}


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) and address else ""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def block_network() -> None:
    """Patch ``socket`` so non-loopback connects and name lookups raise :class:`NetworkBlocked`."""
    if _ORIG:
        return
    _ORIG["connect"] = socket.socket.connect
    _ORIG["connect_ex"] = socket.socket.connect_ex
    _ORIG["getaddrinfo"] = socket.getaddrinfo

    def connect(self, address):
        if not _is_local(address):
            raise NetworkBlocked(f"vpkit: network access blocked (connect to {address!r})")
        return _ORIG["connect"](self, address)

    def connect_ex(self, address):
        if not _is_local(address):
            raise NetworkBlocked(f"vpkit: network access blocked (connect to {address!r})")
        return _ORIG["connect_ex"](self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local((host,)) and host not in (None,):
            raise NetworkBlocked(f"vpkit: network access blocked (lookup of {host!r})")
        return _ORIG["getaddrinfo"](host, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo


def unblock_network() -> None:
    if not _ORIG:
        return
    socket.socket.connect = _ORIG.pop("connect")
    socket.socket.connect_ex = _ORIG.pop("connect_ex")
    socket.getaddrinfo = _ORIG.pop("getaddrinfo")


def guard_from_env() -> bool:
    """Turn the guard on when ``VPKIT_NO_NETWORK=1``; returns whether it is on."""
    if os.environ.get("VPKIT_NO_NETWORK") == "1":
        block_network()
    return bool(_ORIG)


def active() -> bool:
    """Whether the guard is on in this process."""
    return bool(_ORIG)
