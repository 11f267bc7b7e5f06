"""The root of every error the shared package raises: `CampaignCommonError`.

Each error also keeps the standard base it had (`ValueError`, `LookupError`, `RuntimeError`...),
so callers that catch those still do; catching `CampaignCommonError` catches all of ours.
"""


class CampaignCommonError(Exception):
    """Root of the errors raised by `campaign_common`."""
