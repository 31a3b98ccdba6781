"""Use cases: each loads what it needs through the adapters, calls the domain, and stores."""
