"""``python -m campaign_common.cli``: the `campaigns` command (`campaign_common.cli.main`)."""

import sys

from campaign_common.cli.main import main

sys.exit(main())
