"""The one base of every error that means "this input is wrong" rather than "fenqi is broken"."""


class InputError(ValueError):
    """Input the domain refuses; the message says what is wrong and what is accepted."""
