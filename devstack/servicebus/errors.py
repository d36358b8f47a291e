"""Errors the emulator reports to clients, each with the AMQP condition the real service uses.

The condition decides which exception the SDK raises (e.g. `amqp:not-found` ->
MessagingEntityNotFoundError, `com.microsoft:message-lock-lost` -> MessageLockLostError); `status` is
the HTTP-style code of `$management` responses.
"""

from __future__ import annotations


class BrokerError(Exception):
    condition = "amqp:internal-error"
    status = 500


class EntityNotFound(BrokerError):
    condition = "amqp:not-found"
    status = 404


class MessageNotFound(BrokerError):
    condition = "com.microsoft:message-not-found"
    status = 404


class MessageLockLost(BrokerError):
    condition = "com.microsoft:message-lock-lost"
    status = 410


class SessionLockLost(BrokerError):
    condition = "com.microsoft:session-lock-lost"
    status = 410


class SessionCannotBeLocked(BrokerError):
    condition = "com.microsoft:session-cannot-be-locked"
    status = 409


class OperationTimeout(BrokerError):
    condition = "com.microsoft:timeout"
    status = 408


class InvalidOperation(BrokerError):
    """The request is well formed but not allowed on this entity (e.g. a message without session id
    sent to a session queue)."""

    condition = "amqp:not-allowed"
    status = 400


class BadRequest(BrokerError):
    """A field of a request is missing or of the wrong type; the message names it."""

    condition = "com.microsoft:argument-error"
    status = 400
