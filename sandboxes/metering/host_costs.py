"""What the host work a guest causes costs it in fuel: one table for every WASI call Warden
serves, so fuel bounds the worker's CPU in host calls as it does in wasm.

Wasm runs ~10 fuel per nanosecond here; a Warden host call costs ~5-10 us of Python. The
charges below do not make a host call as dear as that (output-heavy programs would pay
more for a flush than for their computing), but every piece of host work that grows with
a guest-chosen number -- bytes copied, directory entries listed or counted, poll
subscriptions -- is paid for in proportion, so a fuel budget bounds host CPU within a
constant factor, whatever the guest asks. Each call also moves at most
``MAX_TRANSFER_BYTES`` (a short count, which POSIX allows and libc loops over), so no
single call can run long past the wall limit between two checks.

The charge is taken from the run's fuel when the call returns (the instrumented module's
fuel global, or the store's fuel for wasmtime-metered runs), and the guest's next check
stops it when that overdraws: both engines report the same fuel.
"""

from __future__ import annotations

from typing import Final

CALL_FUEL: Final = 5_000  # every WASI call Warden serves
BYTES_PER_FUEL: Final = 4  # guest bytes copied in or out (paths, buffers, results)
ITEM_FUEL: Final = 500  # each directory entry sorted, listed or counted; each subscription
MAX_TRANSFER_BYTES: Final = 16 * 1024 * 1024  # one read or write moves at most this
