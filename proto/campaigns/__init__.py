"""Generated protobuf packages for the campaigns contract (see proto/campaigns/v1/*.proto)."""
