"""The exception type users see for bad input, and the warning for implausible specs."""


class ModelInputError(ValueError):
    """Bad input: the message is one sentence naming the field and its valid range.

    The CLI turns it into one line on stderr and exit code 2.
    """


class PlausibilityWarning(UserWarning):
    """A spec value that is valid but outside the range real devices of its family span
    (e.g. a GPU with 3.35 GB/s of DRAM bandwidth: probably TB/s written as GB/s).

    The message names the field, the value and the plausible range; the CLI prints it
    as one line on stderr. Silence it with ``warnings.simplefilter("ignore",
    PlausibilityWarning)`` when exploring exotic designs on purpose.
    """
