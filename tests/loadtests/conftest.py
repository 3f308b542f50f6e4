"""Chromium for the web UI test: the same fixture the page tests use."""

from tests.pages.conftest import browser as browser
