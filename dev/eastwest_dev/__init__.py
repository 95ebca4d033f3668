"""Development tools: local hubs, WAN emulation, the local Airflow stack, demo data. Not shipped.

Nothing in the product package (``eastwest``) imports these.
"""

from pathlib import Path

#: The repository these tools serve (its dags/, include/, sql/ and .local/).
REPO_ROOT = Path(__file__).resolve().parents[2]
