"""market_client: a structured-concurrency client for the HFT simulator gateway."""
