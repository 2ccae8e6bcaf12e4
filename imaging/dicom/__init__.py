"""DICOM in and out: image series, SEG and RTSTRUCT masks, exports, and DICOMweb.

``cases.find_pairs`` turns a PACS export (a folder or zip) into cases for the audit engine;
``export`` writes cleansed masks back as SEG or RTSTRUCT; ``web`` pulls and pushes over
DICOMweb. Modules build on ``imaging.geometry``, ``imaging.formats`` and ``imaging.errors``.
"""
