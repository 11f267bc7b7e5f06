"""Every error the shared package defines derives from its one root, `CampaignCommonError`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import campaign_common
from campaign_common.errors import CampaignCommonError
from campaign_common.page_tokens import InvalidPageToken, decode_page_token
from campaign_common.runs.deadletters import DeadLetterNotFound


def _modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(campaign_common.__path__, "campaign_common.")
        if not info.name.endswith("__main__")  # running it is what importing it does
    ]


def test_errors_every_exception_class_of_the_package_derives_from_the_root() -> None:
    defined = [
        cls
        for name in _modules()
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == name
    ]
    assert len(defined) > 10  # the walk did find the package's errors
    assert [cls.__qualname__ for cls in defined if not issubclass(cls, CampaignCommonError)] == []


def test_errors_keep_their_standard_base_for_callers_that_catch_it() -> None:
    assert issubclass(DeadLetterNotFound, LookupError)
    with pytest.raises(ValueError, match="page"):
        decode_page_token("not a token", lambda position: True)
    assert issubclass(InvalidPageToken, CampaignCommonError)
