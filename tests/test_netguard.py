import subprocess
import sys


def test_guard_blocks_outbound_connections_but_not_loopback():
    code = (
        "import os, socket, urllib.request\n"
        "os.environ['VPKIT_NO_NETWORK']='1'\n"
        "import vpkit\n"
        "from vpkit.netguard import NetworkBlocked\n"
        "try:\n"
        "    urllib.request.urlopen('http://example.com', timeout=2); print('REACHED')\n"
        "except NetworkBlocked: print('BLOCKED')\n"
        "except Exception as e: print('OTHER', type(e).__name__, e)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
        "c = socket.socket(); c.connect(s.getsockname()); print('LOOPBACK_OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "BLOCKED" in out.stdout, out.stdout + out.stderr
    assert "LOOPBACK_OK" in out.stdout
