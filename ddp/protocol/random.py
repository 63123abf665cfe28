"""Meteor's ``Random`` generators and DDP's seeded ``RandomStream`` (PROTOCOL.md R8).

A Meteor client that calls a method runs its stub at once, and the stub inserts
documents with ids drawn from an Alea generator seeded with the call's ``randomSeed``.
When the server draws the same ids from the same seed, the documents it publishes
replace the stub's in place; otherwise the client removes the stub's and adds the
server's, and the user sees them flicker. So :class:`Alea` reproduces Meteor's
arithmetic to the last bit, including JavaScript's 32-bit truncations and its UTF-16
strings, and :class:`RandomStream` names its sequences exactly as Meteor does.

:data:`secure` is the generator for everything that must not be guessable: ids made
outside a seeded method, session ids, secrets.
"""

import math
import secrets
import struct

from ddp.protocol.ids import RANDOM_ID_LENGTH, UNMISTAKABLE_CHARS

HEX_DIGITS = "0123456789abcdef"

#: ``Random.secret()``'s alphabet: 6 bits a character, safe in URLs.
BASE64_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

#: ``Random.secret()``'s default length: 256 bits of entropy.
SECRET_LENGTH = 43

#: Length of the seeds Meteor makes for nested calls (``makeRpcSeed``).
RPC_SEED_LENGTH = 20

_TWO_POW_32 = 2.0**32
_TWO_POW_MINUS_32 = 2.0**-32


class RandomGenerator:
    """Meteor's ``AbstractRandomGenerator``: every method built on :meth:`choice`.

    A subclass provides :meth:`fraction`, or :meth:`choice` too when it has a better
    source than a float; Meteor derives strings one character per draw, and a seeded
    generator must draw in that same order to give the same strings.
    """

    def fraction(self):
        """A float in [0, 1), like ``Math.random()``."""
        raise NotImplementedError

    def choice(self, seq):
        """One element of the non-empty sequence (or string) ``seq``."""
        return seq[math.floor(self.fraction() * len(seq))]

    def random_string(self, length, alphabet):
        """``length`` characters drawn one at a time from ``alphabet``."""
        return "".join(self.choice(alphabet) for _ in range(length))

    def hex_string(self, digits):
        """``digits`` lowercase hexadecimal digits (``Random.hexString``)."""
        return self.random_string(digits, HEX_DIGITS)

    def id(self, length=RANDOM_ID_LENGTH):
        """A ``Random.id()``: characters without look-alikes, 17 (~96 bits) by default."""
        return self.random_string(length, UNMISTAKABLE_CHARS)

    def secret(self, length=SECRET_LENGTH):
        """A ``Random.secret()``: 43 characters of ``[a-zA-Z0-9-_]`` (256 bits) by default."""
        return self.random_string(length, BASE64_CHARS)


class SecureRandom(RandomGenerator):
    """Draws from the operating system's secure source, as Meteor's server ``Random`` does."""

    def fraction(self):
        # 53 bits: every float in [0, 1) this can return is equally likely.
        return secrets.randbits(53) / (1 << 53)

    def choice(self, seq):
        # Without a float in between: no rounding bias towards any element.
        return secrets.choice(seq)


#: The default generator, Meteor's ``Random`` on the server.
secure = SecureRandom()


def _utf16_code_units(value):
    """The UTF-16 code units JavaScript's ``charCodeAt`` walks for ``String(value)``.

    Only strings and integers are accepted: they are what seeds are on the wire and in
    Meteor's tests, and other types (``True``, ``1.0``) print differently in Python.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"An Alea seed must be a str or an int, not {type(value).__name__}")
    data = str(value).encode("utf-16-le", "surrogatepass")
    return struct.unpack(f"<{len(data) // 2}H", data)


def _uint32(number):
    """JavaScript's ``number >>> 0``: truncated towards zero, then modulo 2**32."""
    return int(number) % 4294967296


class _Mash:
    """Alea's seed hash: turns each seed into a float in [0, 1), keeping state across calls."""

    def __init__(self):
        self.n = 0xEFC8249D

    def __call__(self, value):
        n = self.n
        for code in _utf16_code_units(value):
            n += code
            h = 0.02519603282416938 * n
            n = _uint32(h)
            h -= n
            h *= n
            n = _uint32(h)
            h -= n
            n += h * _TWO_POW_32
        self.n = n
        return _uint32(n) * _TWO_POW_MINUS_32


class Alea(RandomGenerator):
    """Meteor's ``Random.createWithSeeds(*seeds)``: the Alea generator, not for secrets.

    The same seeds give the same sequence in Python as in every JavaScript engine.
    """

    def __init__(self, *seeds):
        if not seeds:
            # Meteor refuses too: an unseeded Alea would be neither repeatable nor secure.
            raise ValueError("Alea needs at least one seed")
        self.seeds = seeds
        mash = _Mash()
        self._c = 1
        self._s0 = mash(" ")
        self._s1 = mash(" ")
        self._s2 = mash(" ")
        for seed in seeds:
            self._s0 = self._minus_mash(self._s0, mash, seed)
            self._s1 = self._minus_mash(self._s1, mash, seed)
            self._s2 = self._minus_mash(self._s2, mash, seed)

    @staticmethod
    def _minus_mash(state, mash, seed):
        state -= mash(seed)
        return state + 1 if state < 0 else state

    def fraction(self):
        t = 2091639 * self._s0 + self._c * _TWO_POW_MINUS_32
        self._s0 = self._s1
        self._s1 = self._s2
        # ``t | 0`` in JavaScript; t is positive and below 2**31, so truncation is enough.
        self._c = int(t)
        self._s2 = t - self._c
        return self._s2


class RandomStream:
    """``DDPCommon.RandomStream``: independent Alea sequences, one per name, from one seed.

    Separate names keep ids for one collection stable however many draws another
    collection or a nested call makes in between, on the client and on the server alike.
    ``seed`` is a method call's ``randomSeed``, or a list of seeds; without one the
    stream is seeded from :data:`secure` and reproduces nothing.
    """

    def __init__(self, seed=None):
        if not seed:
            seed = secure.hex_string(RPC_SEED_LENGTH)
        self.seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed]
        self._sequences = {}

    def sequence(self, name):
        """The generator named ``name``, seeded with the stream's seeds then ``name``.

        Asking again continues the same sequence, as Meteor's ``_sequence`` does.
        """
        sequence = self._sequences.get(name)
        if sequence is None:
            sequence = self._sequences[name] = Alea(*self.seeds, name)
        return sequence

    def collection_id(self, collection):
        """The next document id a stub inserting into ``collection`` would make.

        Meteor's ``Mongo.Collection`` draws it from the ``/collection/<name>`` sequence.
        """
        return self.sequence("/collection/" + collection).id()

    def rpc_seed(self, method):
        """The ``randomSeed`` for a call of ``method`` made from within this call.

        Meteor's ``makeRpcSeed`` takes 20 hex digits from the ``/rpc/<method>`` sequence.
        """
        return self.sequence("/rpc/" + method).hex_string(RPC_SEED_LENGTH)
