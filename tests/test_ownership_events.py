"""Who owns an account and who initiated a transaction, as the events record them.

The owner is on the account's Created event; the initiator goes from the command to
its saga, and from the saga to the TransactionAppended (or ErrorRecorded) event of
each account it touches, with the other account of a transfer as the counterparty.
A user's idempotency keys are the user's own. Events stored before any of this
(without owner, initiated_by or counterparty_id) still load, and read as None.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import StoredEvent
from eventsourcing.system import (
    MultiThreadedRunner,
    NewMultiThreadedRunner,
    NewSingleThreadedRunner,
    Runner,
    SingleThreadedRunner,
)

from bankaccounts.domainmodel import BankAccount, UserRef
from bankaccounts.exceptions import (
    AccountClosedError,
    CommandConflictError,
    InsufficientFundsError,
    InvalidIdempotencyKeyError,
    TransactionError,
)
from bankaccounts.ids import USER_KEYS, command_id_for_key
from bankaccounts.simpleapplication import SimpleBankAccountApplication
from bankaccounts.system.accounts import Accounts
from bankaccounts.system.commands import (
    Command,
    Commands,
    DepositFundsCommand,
)
from bankaccounts.system.definition import BankAccountSystem
from bankaccounts.system.sagas import (
    AbortedTransaction,
    RefundFundsSaga,
    Saga,
    Sagas,
    TransferFundsSaga,
)
from tests.waiting import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from eventsourcing.application import Application
    from eventsourcing.domain import DomainEventProtocol

ALICE = UserRef(id=UUID("a11ce000-0000-4000-8000-000000000001"), username="alice")
BOB = UserRef(id=UUID("b0b00000-0000-4000-8000-000000000002"), username="bob")

RUNNERS: list[type[Runner[Any]]] = [
    SingleThreadedRunner,
    MultiThreadedRunner,
    NewSingleThreadedRunner,
    NewMultiThreadedRunner,
]


def stored_in_old_shape(
    application: Application[UUID],
    domain_event: DomainEventProtocol[UUID],
    strip: Callable[[dict[str, Any]], None],
) -> StoredEvent:
    """The event as the application's mapper stores it, less what strip removes."""
    mapper = application.mapper
    stored = mapper.to_stored_event(domain_event)
    state = stored.state
    if mapper.cipher:
        state = mapper.cipher.decrypt(state)
    if mapper.compressor:
        state = mapper.compressor.decompress(state)
    event_state: dict[str, Any] = mapper.transcoder.decode(state)
    strip(event_state)
    state = mapper.transcoder.encode(event_state)
    if mapper.compressor:
        state = mapper.compressor.compress(state)
    if mapper.cipher:
        state = mapper.cipher.encrypt(state)
    return StoredEvent(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=state,
    )


def without(*names: str) -> Callable[[dict[str, Any]], None]:
    """Removes these attributes from an event's state (each must be there)."""

    def strip(event_state: dict[str, Any]) -> None:
        for name in names:
            del event_state[name]

    return strip


# The attributes each event gained, that events stored before do not have.
NEW_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "BankAccount.Created": ("owner",),
    "BankAccount.TransactionAppended": ("initiated_by", "counterparty_id"),
    "BankAccount.ErrorRecorded": ("initiated_by",),
    "BankAccount.OverdraftLimitSet": (),
    "BankAccount.Closed": (),
    "DepositFundsCommand.Created": ("initiated_by",),
    "WithdrawFundsCommand.Created": ("initiated_by",),
    "TransferFundsCommand.Created": ("initiated_by",),
    "DepositFundsSaga.Created": ("initiated_by",),
    "WithdrawFundsSaga.Created": ("initiated_by",),
    "TransferFundsSaga.Created": ("initiated_by",),
    "TransferFundsSaga.DebitRecorded": ("debit_account_id", "initiated_by"),
    "RefundFundsSaga.Created": ("initiated_by", "counterparty_id"),
    "AbortedTransaction.Recorded": ("initiated_by",),
}


def old_shape(
    application: Application[UUID], *events: DomainEventProtocol[UUID]
) -> list[StoredEvent]:
    """The events stored as they were before owners and initiators were recorded."""
    return [
        stored_in_old_shape(
            application, event, without(*NEW_ATTRIBUTES[type(event).__qualname__])
        )
        for event in events
    ]


def events_of(application: Application[UUID], originator_id: UUID) -> list[Any]:
    return list(application.repository.event_store.get(originator_id))


def appended(application: Application[UUID], account_id: UUID) -> list[Any]:
    """The account's TransactionAppended events, oldest first."""
    return [
        event
        for event in events_of(application, account_id)
        if isinstance(event, BankAccount.TransactionAppended)
    ]


# The domain model, without storage.


class TestDomainModel:
    def test_an_account_records_its_owner(self) -> None:
        account = BankAccount(name="Alice's", owner=ALICE)
        (opened,) = account.collect_events()
        assert isinstance(opened, BankAccount.Created)
        assert opened.owner == ALICE
        assert account.owner == ALICE
        assert BankAccount(name="Nobody's").owner is None

    def test_a_transaction_records_its_initiator_and_counterparty(self) -> None:
        account = BankAccount()
        transaction_id, other = uuid4(), uuid4()
        account.append_transaction(
            Decimal("10.00"),
            transaction_id,
            initiated_by=ALICE,
            counterparty_id=other,
        )
        account.append_transaction(Decimal("1.00"))
        _, first, second = account.collect_events()
        assert isinstance(first, BankAccount.TransactionAppended)
        assert (first.initiated_by, first.counterparty_id) == (ALICE, other)
        assert first.transaction_id == transaction_id
        assert isinstance(second, BankAccount.TransactionAppended)
        assert (second.initiated_by, second.counterparty_id) == (None, None)
        assert account.balance == Decimal("11.00")

    def test_a_refused_transaction_records_its_initiator(self) -> None:
        account = BankAccount()
        transaction_id = uuid4()
        account.record_error(
            InsufficientFundsError(account.id), transaction_id, initiated_by=ALICE
        )
        account.record_error(TransactionError(account.id))
        _, first, second = account.collect_events()
        assert isinstance(first, BankAccount.ErrorRecorded)
        assert first.initiated_by == ALICE
        assert first.transaction_id == transaction_id
        assert first.error == InsufficientFundsError(account.id)
        assert isinstance(second, BankAccount.ErrorRecorded)
        assert second.initiated_by is None

    def test_a_user_s_idempotency_keys_are_the_user_s_own(self) -> None:
        alices = Commands.command_id_for("k", ALICE.id)
        bobs = Commands.command_id_for("k", BOB.id)
        nobodys = Commands.command_id_for("k")
        assert len({alices, bobs, nobodys}) == 3
        assert nobodys == command_id_for_key("k")  # as before users
        assert alices == Commands.command_id_for("k", ALICE.id)
        assert alices != Commands.command_id_for("k2", ALICE.id)
        # Neither a user's id nor a derived id is a user's key's id.
        assert alices not in {ALICE.id, USER_KEYS}
        with pytest.raises(InvalidIdempotencyKeyError):
            Commands.command_id_for("a b", ALICE.id)
        with pytest.raises(TypeError):
            Commands.command_id_for("k", ALICE)  # type: ignore[arg-type]

    def test_an_aborted_request_records_its_initiator(self) -> None:
        command = DepositFundsCommand(
            id=uuid4(),
            credit_account_id=uuid4(),
            amount=Decimal("1.00"),
            initiated_by=ALICE,
        )
        (created,) = command.collect_events()
        sagas = Sagas(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        try:
            outcome = sagas.outcome_of_failure(created, RuntimeError("a fault"))
        finally:
            sagas.close()
        assert outcome is not None
        (aborted,) = outcome
        assert aborted.initiated_by == ALICE
        (recorded,) = aborted.collect_events()
        assert isinstance(recorded, AbortedTransaction.Recorded)
        assert recorded.initiated_by == ALICE


# Storage: the new attributes round-trip, and events stored before them still load.


@pytest.fixture
def app(persistence_env: dict[str, str]) -> Iterator[SimpleBankAccountApplication]:
    app = SimpleBankAccountApplication(env=persistence_env)
    yield app
    app.close()


class TestStorage:
    def test_owner_initiator_and_counterparty_round_trip(
        self, app: SimpleBankAccountApplication, persistence_env: dict[str, str]
    ) -> None:
        alices = app.create_account("Alice's", owner=ALICE)
        bobs = app.create_account("Bob's", owner=BOB)
        app.deposit_funds(alices, "10.00", initiated_by=ALICE)
        app.transfer_funds(alices, bobs, "4.00", initiated_by=ALICE)
        app.withdraw_funds(bobs, "1.00", initiated_by=BOB)
        readers = [app]
        if persistence_env["PERSISTENCE_MODULE"] != "eventsourcing.popo":
            readers.append(SimpleBankAccountApplication(env=persistence_env))
        try:
            for reader in readers:
                opened = events_of(reader, alices)[0]
                assert type(opened.owner) is UserRef
                assert opened.owner == ALICE
                assert reader.get_account(alices).owner == ALICE
                assert reader.get_account(bobs).owner == BOB
                deposit, debit = appended(reader, alices)
                assert (deposit.initiated_by, deposit.counterparty_id) == (ALICE, None)
                assert (debit.initiated_by, debit.counterparty_id) == (ALICE, bobs)
                assert type(debit.counterparty_id) is UUID
                credit, withdrawal = appended(reader, bobs)
                assert (credit.initiated_by, credit.counterparty_id) == (ALICE, alices)
                assert withdrawal.initiated_by == BOB
                assert withdrawal.counterparty_id is None
        finally:
            for reader in readers[1:]:
                reader.close()

    def test_account_events_stored_before_owners_and_initiators_load(
        self, app: SimpleBankAccountApplication
    ) -> None:
        # The seed's events, in the seed's shape: no owner, no initiator, no
        # counterparty (the account's own events, stripped by the mapper).
        account = BankAccount(name="Old")
        account.append_transaction(Decimal("100.00"), uuid4())
        account.append_transaction(Decimal("-30.00"), uuid4())
        account.record_error(InsufficientFundsError(account.id), uuid4())
        account.set_overdraft_limit(Decimal("5.00"))
        app.recorder.insert_events(old_shape(app, *account.collect_events()))

        loaded = app.get_account(account.id)
        assert loaded.name == "Old"
        assert loaded.owner is None
        assert loaded.balance == Decimal("70.00")
        assert loaded.overdraft_limit == Decimal("5.00")
        assert loaded.version == 5
        events = events_of(app, account.id)
        assert [type(e).__qualname__ for e in events] == [
            "BankAccount.Created",
            "BankAccount.TransactionAppended",
            "BankAccount.TransactionAppended",
            "BankAccount.ErrorRecorded",
            "BankAccount.OverdraftLimitSet",
        ]
        # What the followers read of them: the new attributes, as None.
        assert "owner" not in vars(events[0])
        assert events[0].owner is None
        for event in events[1:3]:
            assert (event.initiated_by, event.counterparty_id) == (None, None)
        assert events[3].initiated_by is None
        assert events[3].error == InsufficientFundsError(account.id)

        # The old account takes new transactions, which record their initiator.
        other = app.create_account(owner=BOB)
        app.transfer_funds(account.id, other, "20.00", initiated_by=BOB)
        debit = appended(app, account.id)[-1]
        assert (debit.initiated_by, debit.counterparty_id) == (BOB, other)
        assert app.get_balance(account.id) == Decimal("50.00")

    def test_a_snapshot_taken_before_owners_loads(
        self, app: SimpleBankAccountApplication
    ) -> None:
        account = BankAccount(name="Old")
        account.append_transaction(Decimal("7.00"))
        app.recorder.insert_events(old_shape(app, *account.collect_events()))
        assert app.snapshots is not None

        def strip_owner(event_state: dict[str, Any]) -> None:
            del event_state["state"]["owner"]

        snapshot = Snapshot.take(account)
        app.snapshots.recorder.insert_events(
            [stored_in_old_shape(app, snapshot, strip_owner)]
        )
        (stored,) = app.snapshots.get(account.id)
        assert "owner" not in stored.state

        loaded = app.get_account(account.id)
        assert loaded.owner is None
        assert loaded.balance == Decimal("7.00")
        app.deposit_funds(account.id, "1.00", initiated_by=ALICE)
        assert app.get_balance(account.id) == Decimal("8.00")


# The system: the initiator flows from the command through the saga to the accounts.


@pytest.fixture(params=RUNNERS, ids=[cls.__name__ for cls in RUNNERS])
def runner(
    request: pytest.FixtureRequest, persistence_env: dict[str, str]
) -> Iterator[Runner[Any]]:
    runner_class: type[Runner[Any]] = request.param
    runner = runner_class(BankAccountSystem(), env=persistence_env)
    runner.start()
    yield runner
    runner.stop()


class TestSystem:
    @pytest.fixture(autouse=True)
    def _applications(self, runner: Runner[Any]) -> None:
        self.runner = runner
        self.commands = runner.get(Commands)
        self.sagas = runner.get(Sagas)
        self.accounts = runner.get(Accounts)

    def find_saga(self, transaction_id: UUID) -> Saga | None:
        has_errored = getattr(self.runner, "has_errored", None)
        if has_errored is not None and has_errored.is_set():
            self.runner.reraise_thread_errors()  # type: ignore[attr-defined]
            pytest.fail("a runner thread has errored")
        try:
            return self.sagas.get_saga(transaction_id)
        except AggregateNotFoundError:
            return None

    def finished(self, transaction_id: UUID) -> Saga:
        def is_finished() -> bool:
            saga = self.find_saga(transaction_id)
            return saga is not None and saga.is_finished

        wait_for(is_finished, message=f"saga {transaction_id} did not finish")
        return self.sagas.get_saga(transaction_id)

    def succeeded(self, transaction_id: UUID) -> Saga:
        saga = self.finished(transaction_id)
        assert saga.has_succeeded, saga.errors
        return saga

    def errored(self, transaction_id: UUID, *errors: Exception) -> Saga:
        saga = self.finished(transaction_id)
        assert saga.has_errored
        assert saga.errors == list(errors)
        return saga

    def transaction_events(self, account_id: UUID, transaction_id: UUID) -> list[Any]:
        """The account's events of this transaction (appended or refused)."""
        return [
            event
            for event in events_of(self.accounts, account_id)
            if getattr(event, "transaction_id", None) == transaction_id
        ]

    def test_an_account_is_opened_for_its_owner(self) -> None:
        account_id = self.accounts.create_account("Alice's", owner=ALICE)
        assert self.accounts.get_account(account_id).owner == ALICE
        assert events_of(self.accounts, account_id)[0].owner == ALICE
        assert self.accounts.get_account(self.accounts.create_account()).owner is None

    def test_deposits_and_withdrawals_record_their_initiator(self) -> None:
        account_id = self.accounts.create_account(owner=ALICE)
        deposit_id = self.commands.deposit_funds(account_id, "10", initiated_by=ALICE)
        withdrawal_id = self.commands.withdraw_funds(account_id, "3", initiated_by=BOB)
        anonymous_id = self.commands.deposit_funds(account_id, "1")
        for transaction_id, who in [
            (deposit_id, ALICE),
            (withdrawal_id, BOB),
            (anonymous_id, None),
        ]:
            command = self.commands.get_command(transaction_id)
            assert command is not None
            assert command.arguments()["initiated_by"] == who
            assert self.succeeded(transaction_id).initiated_by == who
            (event,) = self.transaction_events(account_id, transaction_id)
            assert isinstance(event, BankAccount.TransactionAppended)
            assert (event.initiated_by, event.counterparty_id) == (who, None)
        assert self.accounts.get_balance(account_id) == Decimal("8.00")

    def test_a_transfer_records_its_initiator_and_counterparty_on_both_accounts(
        self,
    ) -> None:
        alices = self.accounts.create_account(owner=ALICE)
        bobs = self.accounts.create_account(owner=BOB)
        self.succeeded(self.commands.deposit_funds(alices, "100", initiated_by=ALICE))
        transfer_id = self.commands.transfer_funds(
            alices, bobs, "30", initiated_by=ALICE
        )
        saga = self.succeeded(transfer_id)
        assert saga.initiated_by == ALICE
        (debit,) = self.transaction_events(alices, transfer_id)
        (credit,) = self.transaction_events(bobs, transfer_id)
        assert (debit.amount, debit.initiated_by, debit.counterparty_id) == (
            Decimal("-30.00"),
            ALICE,
            bobs,
        )
        assert (credit.amount, credit.initiated_by, credit.counterparty_id) == (
            Decimal("30.00"),
            ALICE,
            alices,
        )
        (debit_recorded,) = [
            e
            for e in events_of(self.sagas, transfer_id)
            if isinstance(e, TransferFundsSaga.DebitRecorded)
        ]
        assert debit_recorded.debit_account_id == alices
        assert debit_recorded.initiated_by == ALICE

    def test_a_refunded_transfer_records_its_initiator_and_counterparty(
        self,
    ) -> None:
        alices = self.accounts.create_account(owner=ALICE)
        closed = self.accounts.create_account(owner=BOB)
        self.accounts.close_account(closed)
        self.succeeded(self.commands.deposit_funds(alices, "100", initiated_by=ALICE))
        transfer_id = self.commands.transfer_funds(
            alices, closed, "30", initiated_by=ALICE
        )
        saga = cast(
            "TransferFundsSaga",
            self.errored(transfer_id, AccountClosedError(closed)),
        )
        refund_id = saga.refund_id
        assert refund_id == RefundFundsSaga.create_id(transfer_id)
        refund = self.succeeded(refund_id)
        assert isinstance(refund, RefundFundsSaga)
        assert (refund.initiated_by, refund.counterparty_id) == (ALICE, closed)
        (debit,) = self.transaction_events(alices, transfer_id)
        (refunded,) = self.transaction_events(alices, refund_id)
        assert (debit.initiated_by, debit.counterparty_id) == (ALICE, closed)
        assert (refunded.amount, refunded.initiated_by, refunded.counterparty_id) == (
            Decimal("30.00"),
            ALICE,
            closed,
        )
        (refused,) = self.transaction_events(closed, transfer_id)
        assert isinstance(refused, BankAccount.ErrorRecorded)
        assert refused.initiated_by == ALICE
        assert self.accounts.get_balance(alices) == Decimal("100.00")

    def test_a_refused_transaction_records_its_initiator(self) -> None:
        account_id = self.accounts.create_account(owner=ALICE)
        transaction_id = self.commands.withdraw_funds(
            account_id, "1", initiated_by=ALICE
        )
        self.errored(transaction_id, InsufficientFundsError(account_id))
        (refused,) = self.transaction_events(account_id, transaction_id)
        assert isinstance(refused, BankAccount.ErrorRecorded)
        assert refused.initiated_by == ALICE

    def test_users_keys_are_their_own(self) -> None:
        account_id = self.accounts.create_account()
        alices = self.commands.deposit_funds(account_id, "10", "k", initiated_by=ALICE)
        bobs = self.commands.deposit_funds(account_id, "10", "k", initiated_by=BOB)
        nobodys = self.commands.deposit_funds(account_id, "10", "k")
        assert alices == self.commands.command_id_for("k", ALICE.id)
        assert bobs == self.commands.command_id_for("k", BOB.id)
        assert nobodys == self.commands.command_id_for("k")
        assert len({alices, bobs, nobodys}) == 3
        for transaction_id in (alices, bobs, nobodys):
            self.succeeded(transaction_id)
        # Each user's retry finds their own transaction, and records nothing new.
        before = self.commands.recorder.max_notification_id()
        assert self.commands.deposit_funds(account_id, "10", "k", initiated_by=BOB) == (
            bobs
        )
        assert self.commands.deposit_funds(account_id, "10.00", "k") == nobodys
        with pytest.raises(CommandConflictError):
            self.commands.deposit_funds(account_id, "11", "k", initiated_by=ALICE)
        with pytest.raises(CommandConflictError):
            self.commands.withdraw_funds(account_id, "10", "k", initiated_by=ALICE)
        assert self.commands.recorder.max_notification_id() == before
        assert self.accounts.get_balance(account_id) == Decimal("30.00")

    def test_events_stored_before_owners_and_initiators_are_processed(self) -> None:
        """A bank upgraded with transactions in flight carries on with them."""
        # An account of the seed's (no owner), with money in it.
        old = BankAccount(name="Old")
        old.append_transaction(Decimal("100.00"), uuid4())
        self.accounts.recorder.insert_events(
            old_shape(self.accounts, *old.collect_events())
        )
        new = self.accounts.create_account(owner=BOB)
        # A transfer that had not started, and one whose debit had been recorded
        # (Accounts applies both the debit and the credit of the second here).
        fresh_transfer = TransferFundsSaga(
            id=uuid4(),
            debit_account_id=old.id,
            credit_account_id=new,
            amount=Decimal("30.00"),
        )
        debited_transfer = TransferFundsSaga(
            id=uuid4(),
            debit_account_id=old.id,
            credit_account_id=new,
            amount=Decimal("20.00"),
        )
        debited_transfer.on_transaction_appended(old.id)
        self.sagas.recorder.insert_events(
            old_shape(
                self.sagas,
                *fresh_transfer.collect_events(),
                *debited_transfer.collect_events(),
            )
        )
        # A deposit requested with a key, not yet carried out.
        key = "legacy-key"
        legacy_deposit = DepositFundsCommand(
            id=self.commands.command_id_for(key),
            credit_account_id=old.id,
            amount=Decimal("5.00"),
        )
        self.commands.recorder.insert_events(
            old_shape(self.commands, *legacy_deposit.collect_events())
        )
        command = self.commands.get_command(legacy_deposit.id)
        assert isinstance(command, Command)

        # A new request prompts the followers, which read the old events too.
        prompt = self.commands.deposit_funds(new, "1", initiated_by=BOB)
        self.succeeded(prompt)
        for saga_id in (fresh_transfer.id, debited_transfer.id, legacy_deposit.id):
            assert self.succeeded(saga_id).initiated_by is None

        # Its retry is the same request: the same id, nothing recorded.
        before = self.commands.recorder.max_notification_id()
        assert self.commands.deposit_funds(old.id, "5", key) == legacy_deposit.id
        assert self.commands.recorder.max_notification_id() == before

        account = self.accounts.get_account(old.id)
        assert account.owner is None
        assert account.balance == Decimal("55.00")
        assert self.accounts.get_balance(new) == Decimal("51.00")
        # A new event of an old saga carries what it knows: the debited account.
        (credit,) = self.transaction_events(new, fresh_transfer.id)
        assert (credit.initiated_by, credit.counterparty_id) == (None, old.id)
        # An old event did not say: no counterparty, no initiator.
        (credit,) = self.transaction_events(new, debited_transfer.id)
        assert (credit.initiated_by, credit.counterparty_id) == (None, None)
        (debit,) = self.transaction_events(old.id, debited_transfer.id)
        assert (debit.initiated_by, debit.counterparty_id) == (None, new)
        # What Sagas and the read model read of the old events: None.
        (created,) = events_of(self.commands, legacy_deposit.id)
        assert isinstance(created, DepositFundsCommand.Created)
        assert created.initiated_by is None
        created, debit_recorded = events_of(self.sagas, debited_transfer.id)[:2]
        assert isinstance(created, TransferFundsSaga.Created)
        assert created.initiated_by is None
        assert isinstance(debit_recorded, TransferFundsSaga.DebitRecorded)
        assert debit_recorded.debit_account_id is None
        assert debit_recorded.initiated_by is None
