"""fenqi (分期): a consumer installment credit servicing engine."""
