"""The one exception type users see for bad input."""


class ModelInputError(ValueError):
    """Bad input: the message is one sentence naming the field and its valid range.

    The CLI turns it into one line on stderr and exit code 2.
    """
