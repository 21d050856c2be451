"""The errors the flow reports to users: one line each, naming the thing and the rule."""


class HashiflexError(Exception):
    """Base of every user-facing error; the CLI prints it as one line and exits 2."""


class InputError(HashiflexError):
    """A file, shape or option the user gave is wrong."""


class ModelError(HashiflexError):
    """The model cannot be compiled (unsupported op, shapes that do not chain...)."""


class DesignError(HashiflexError):
    """A design directory is missing, incomplete or not a compiled design."""


class ToolchainError(HashiflexError):
    """The simulator toolchain is missing or failed."""


class CheckFailed(HashiflexError):
    """RTL and golden model disagree."""
