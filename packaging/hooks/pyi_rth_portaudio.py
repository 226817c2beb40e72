# Runtime hook: make sounddevice load the PortAudio library bundled with Michi.
#
# On Linux, sounddevice finds PortAudio with ctypes.util.find_library("portaudio"), which asks
# `ldconfig -p` (and gcc/ld, absent on most desktops): it never looks inside the bundle, and on a
# machine without libportaudio2 it returns None and `import sounddevice` raises "PortAudio library
# not found". This hook runs before any application code, so sounddevice's
# `from ctypes.util import find_library` picks up the patched function, which answers with the
# bundled copy's full path. Other names resolve as before.


def _pyi_rthook():
    import ctypes.util
    import glob
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return  # Windows and macOS: sounddevice's wheel ships PortAudio in _sounddevice_data
    candidates = sorted(glob.glob(os.path.join(sys._MEIPASS, "libportaudio.so*")))  # .so.2 (or .so.2.0.0)
    if not candidates:
        return
    bundled = candidates[0]
    system_find_library = ctypes.util.find_library

    def find_library(name):
        if name == "portaudio":
            return bundled
        return system_find_library(name)

    ctypes.util.find_library = find_library


_pyi_rthook()
del _pyi_rthook
