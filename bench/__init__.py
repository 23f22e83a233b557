"""The sessiond benchmark: run by hand (``make bench``), never by the test suite."""
