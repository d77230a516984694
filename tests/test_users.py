"""User lookups never raise: a name the C library cannot take is no user."""

import os

from sflow.users import name_of, uid_of


def test_names_with_nul_or_unknown_are_no_user():
    assert uid_of("ro\x00ot") is None
    assert uid_of("no-such-user-here") is None


def test_digits_stand_for_the_uid_and_names_resolve():
    assert uid_of("4242") == 4242
    me = name_of(os.getuid())
    assert me and uid_of(me) == os.getuid()
    assert name_of(2**40) is None
