"""Reading and writing medical images and masks: file formats and their geometry, case
discovery and the input checks, DICOM (series, SEG, RTSTRUCT, export) and DICOMweb.

numpy, nibabel, pynrrd, pydicom and highdicom only: no torch, and nothing else of segaudit's.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("segaudit")  # pyproject.toml's version: the one place it is set
except PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
    __version__ = "0+unknown"
