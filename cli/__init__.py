"""The ``segaudit`` command line: one entry point over models/, bench/, app/ and worker/."""
