"""A test double of ``pycuda.driver`` that models the semantics of pycuda 2026.1 (src/cpp/cuda.hpp)
that can hurt us, with host memory standing in for device memory:

* each thread has its own context stack (pycuda's ``thread_specific_ptr<context_stack>``); when a
  thread ends with a context still on it, pycuda prints "The context stack was not empty upon module
  cleanup" and calls ``abort()``. Here the thread's end is seen through a thread-local sentinel: it
  calls ``os.abort()`` too when ``abort=True`` (for a subprocess test), else records the thread in
  ``drv.aborts`` (tests assert it stays empty);
* ``Context.pop()`` is static: it pops the calling thread's top, whichever context that is, and raises
  ``LogicError`` on an empty stack;
* ``Device.retain_primary_context()`` retains (``drv.retains`` counts) and does not push;
  ``detach()`` releases when the context is current (then also takes it off the stack) or when called
  on the thread that made it; from another thread, not current, it releases nothing (pycuda's
  "leaked out-of-thread context") and the retain leaks;
* allocations, streams and pinned host memory need a current context and remember it; their
  ``free()`` (and a stream's destruction) re-activates it: fine when it is current, pushed and popped
  on the thread that made the context, and from any other thread a UserWarning "... in out-of-thread
  context could not be cleaned up" and a leak (``drv.leaks``);
* copies and synchronisation need a current context.

It never stands in for CUDA's results: copies are plain memory moves.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import types
import warnings

import numpy as np


def make_fake_pycuda(abort: bool = False, driver_version: int = 12020, built_for=(12, 2, 0),
                     init_error: str | None = None, gpu: str = "Fake Orin", cc=(8, 7)) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")
    drv.aborts, drv.leaks, drv.calls = [], [], []
    drv.retains = 0
    tls = threading.local()

    class Error(Exception):
        pass

    class LogicError(Error):
        pass

    class RuntimeError_(Error):
        pass

    RuntimeError_.__name__ = "RuntimeError"
    drv.Error, drv.LogicError, drv.RuntimeError = Error, LogicError, RuntimeError_

    class _StackSentinel:
        """Dies with the thread's local storage, as pycuda's context_stack does."""

        def __init__(self, stack, name):
            self.stack, self.name = stack, name

        def __del__(self):
            if self.stack:
                if abort:
                    sys.stderr.write("PyCUDA ERROR: The context stack was not empty upon module cleanup.\n")
                    sys.stderr.flush()
                    os.abort()
                drv.aborts.append(self.name)

    def stack() -> list:
        if not hasattr(tls, "sentinel"):
            tls.sentinel = _StackSentinel([], threading.current_thread().name)
        return tls.sentinel.stack

    def current():
        st = stack()
        while st and not st[-1].valid:  # pycuda's current_context(): dead entries are dropped
            st.pop()
        return st[-1] if st else None

    def need_context(what):
        if current() is None:
            raise LogicError(f"{what} failed: invalid device context - no currently active context?")
        drv.calls.append((what, threading.current_thread().name))

    drv.current_context = current
    drv.thread_stack = stack

    class Context:
        def __init__(self):
            self.valid = True
            self.thread = threading.get_ident()

        def push(self):
            if not self.valid:
                raise LogicError("context::push failed: cannot push a dead context")
            stack().append(self)

        @staticmethod
        def pop():
            st = stack()
            if not st:
                raise LogicError("context::pop failed: invalid device context - cannot pop non-current context")
            st.pop()

        def detach(self):
            if not self.valid:
                raise LogicError("context::detach failed: invalid device context - cannot detach from invalid context")
            st = stack()
            if current() is self:
                drv.retains -= 1
                self.valid = False
                while st and (st[-1] is self or not st[-1].valid):
                    st.pop()
            elif self.thread == threading.get_ident():
                drv.retains -= 1
                self.valid = False
            else:
                self.valid = False  # out-of-thread: pycuda releases nothing (the retain leaks)

    drv.Context = Context

    class _Activation:
        """pycuda's scoped_context_activation, for cleanups."""

        def __init__(self, ctx, what):
            self.ctx, self.what, self.switched, self.ok = ctx, what, False, True

        def __enter__(self):
            if not self.ctx.valid:
                # pycuda skips it silently; the memory goes only when the context is destroyed, which
                # TensorRT's own retain of the primary context prevents: a leak for us
                drv.leaks.append(f"{self.what} freed after its context was detached")
                self.ok = False
                return self
            if current() is not self.ctx:
                if self.ctx.thread != threading.get_ident():
                    warnings.warn(f"{self.what} in out-of-thread context could not be cleaned up", UserWarning,
                                  stacklevel=3)
                    drv.leaks.append(self.what)
                    self.ok = False
                    return self
                stack().append(self.ctx)
                self.switched = True
            return self

        def __exit__(self, *exc):
            if self.switched:
                Context.pop()

    class Device:
        def __init__(self, i):
            self.i = i

        def retain_primary_context(self):
            drv.retains += 1
            return Context()

        def name(self):
            return gpu

        def compute_capability(self):
            return cc

    drv.Device = Device

    class DeviceAllocation:
        def __init__(self, nbytes):
            need_context("mem_alloc")
            self.ctx = current()
            self._mem = np.zeros(max(1, nbytes), np.uint8)
            self.valid = True

        def __int__(self):
            return self._mem.ctypes.data

        def free(self):
            if not self.valid:
                raise LogicError("device_allocation::free failed: invalid resource handle")
            with _Activation(self.ctx, "device_allocation"):
                pass
            self.valid = False

    class _HostAllocation(np.ndarray):
        """The .base of pagelocked_empty's array (pycuda's pagelocked_host_allocation)."""

        def free(self):
            if getattr(self, "freed", False):
                raise LogicError("pagelocked_host_allocation::free failed: invalid resource handle")
            with _Activation(self.ctx, "pagelocked_host_allocation"):
                pass
            self.freed = True

    def pagelocked_empty(shape, dtype, order="C", mem_flags=0):
        need_context("pagelocked_empty")
        base = _HostAllocation(shape, dtype)  # owns its memory, so it stays the array's .base
        base.fill(0)
        base.ctx = current()
        return base.view(np.ndarray)

    class Stream:
        _next = 0x100

        def __init__(self, flags=0):
            need_context("stream")
            self.ctx = current()
            Stream._next += 1
            self.handle = Stream._next

        def synchronize(self):
            need_context("synchronize")
            return self

        def __del__(self):
            with _Activation(self.ctx, "stream"):
                pass

    def memcpy_htod_async(dest, src, stream=None):
        need_context("memcpy_htod_async")
        src = np.ascontiguousarray(src)
        ctypes.memmove(int(dest), src.ctypes.data, src.nbytes)

    def memcpy_dtoh_async(dest, src, stream=None):
        need_context("memcpy_dtoh_async")
        ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes)

    def memcpy_dtod_async(dest, src, size, stream=None):
        need_context("memcpy_dtod_async")
        ctypes.memmove(int(dest), int(src), size)

    def init(flags=0):
        if init_error:
            raise RuntimeError_(f"cuInit failed: {init_error}")

    drv.init = init
    drv.mem_alloc = DeviceAllocation
    drv.pagelocked_empty = pagelocked_empty
    drv.Stream = Stream
    drv.memcpy_htod_async, drv.memcpy_dtoh_async, drv.memcpy_dtod_async = (
        memcpy_htod_async, memcpy_dtoh_async, memcpy_dtod_async)
    drv.get_version = lambda: tuple(built_for)
    drv.get_driver_version = lambda: driver_version
    return drv


def install_fake_pycuda(setitem, **kw) -> types.ModuleType:
    """Install as ``pycuda`` / ``pycuda.driver`` through ``setitem(sys.modules, name, module)``
    (monkeypatch.setitem in tests)."""
    drv = make_fake_pycuda(**kw)
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    setitem(sys.modules, "pycuda", pkg)
    setitem(sys.modules, "pycuda.driver", drv)
    return drv
