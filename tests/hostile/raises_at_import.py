"""A module that fails while being imported, for an EXCEPTION_MAPPER entry that points into it."""


class Declined(Exception):
    pass


raise ZeroDivisionError("this module is broken")
