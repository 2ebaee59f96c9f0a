"""Per-customer accounting: rate limits and usage metering with monthly quotas."""
