# webrtcvad is installed from the `webrtcvad-wheels` distribution (same import name; the original
# `webrtcvad` sdist breaks with setuptools >= 81). pyinstaller-hooks-contrib's hook-webrtcvad.py
# copies the metadata of a distribution called `webrtcvad`, which does not exist here, and fails
# the build. This hook replaces it (hooks from `hookspath` win over contrib ones): the module
# reads its version from the `webrtcvad-wheels` metadata at import time.
from PyInstaller.utils.hooks import copy_metadata

datas = copy_metadata("webrtcvad-wheels")
