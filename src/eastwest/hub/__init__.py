"""The hub client: the SSH hook for western hubs and the transfer engine built on it."""
