"""Payment channels: where money is debited from and paid back to (adapters)."""
