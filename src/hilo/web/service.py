"""The agent workspace's views and actions, built on the domain services the REST API uses.

Reads assemble what a page shows (the inbox, the unified timeline, the context panel);
writes call the same ``check_*`` / ``do_*`` functions as the API, so a reply, an assignment or
a merge made in the browser is the same change, with the same events, as one made over REST.
"""

from __future__ import annotations

import bisect
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from hilo import events
from hilo.auth import service as auth
from hilo.channels import consent
from hilo.channels import repository as channel_repository
from hilo.channels import service as channels
from hilo.channels.registry import ADAPTERS, get_adapter
from hilo.clock import now
from hilo.contacts import repository as contact_repository
from hilo.contacts import service as contacts
from hilo.conversations import repository as conversation_repository
from hilo.conversations import service as conversations
from hilo.conversations import views as conversation_views
from hilo.conversations.schemas import ConversationOut
from hilo.crm import service as crm
from hilo.errors import Conflict, HiloError, InvalidPayload
from hilo.i18n import _
from hilo.models import (
    CannedResponse,
    Channel,
    Company,
    Contact,
    Event,
    Message,
    Team,
    User,
    Workspace,
)
from hilo.scoping import get_scoped
from hilo.web import repository
from hilo.web.schemas import (
    AttachmentView,
    CannedView,
    ChannelAdmin,
    ChannelContact,
    ChannelInfo,
    ConversationView,
    Duplicate,
    HeaderView,
    InboxFilters,
    InboxRow,
    InboxView,
    PanelView,
    ReplyChannel,
    ReplyView,
    Segment,
    TimelineItem,
    TimelineView,
)
from hilo.web.signin import WebUser

Translate = Callable[..., str]
T = TypeVar("T")

INBOX_PAGE = 50
PREVIEW_CHARS = 140
# How many channel colours the stylesheet defines.
COLOURS = 8
VIEWS = ("all", "mine", "unassigned")
STATUS_FILTERS = ("open", "pending", "snoozed", "resolved", "any")

STATUS_LABELS = {
    "open": _("Open"),
    "pending": _("Pending"),
    "snoozed": _("Snoozed"),
    "resolved": _("Resolved"),
    "any": _("Any status"),
}
PRIORITY_LABELS = {
    "low": _("Low"),
    "normal": _("Normal"),
    "high": _("High"),
    "urgent": _("Urgent"),
}
# Where the customer went, in "the customer moved from … to …", when a name would not say it.
MOVED_TO = {"voice": _("a phone call")}
IDENTITY_LABELS = {
    "phone": _("Phone"),
    "email": _("E-mail"),
    "api": _("App user"),
    "webchat": _("Web visitor"),
    "whatsapp": "WhatsApp",
    "telegram": "Telegram",
    "messenger": "Messenger",
    "instagram": "Instagram",
}
SAME = {"phone": _("same phone"), "email": _("same e-mail"), "whatsapp": _("same phone")}
LANGUAGE_NAMES = {"es": "Español", "en": "English"}
ROLE_LABELS = {"admin": _("Admin"), "supervisor": _("Supervisor"), "agent": _("Agent")}
DELIVERY_LABELS = {
    "queued": _("Queued"),
    "sending": _("Sending"),
    "sent": _("Sent"),
    "delivered": _("Delivered"),
    "read": _("Read"),
    "failed": _("Not delivered"),
}
CALL_LABELS = {
    "inbound": _("Incoming call"),
    "outbound": _("Outgoing call"),
}

# System lines of the timeline: the events that change a conversation.
TIMELINE_EVENTS = (
    "conversation.created",
    "conversation.channel_switched",
    "conversation.status_changed",
    "conversation.resolved",
    "conversation.reopened",
    "conversation.assigned",
    "conversation.unassigned",
    "conversation.team_changed",
    "conversation.priority_changed",
    "conversation.label_added",
    "conversation.label_removed",
    "contact.opted_out",
    "contact.opted_in",
    "bot.handoff",
)
# The events that add a message: their order is the order the thread was written in.
MESSAGE_EVENTS = ("message.received", "message.queued", "note.created", "call.logged")
MENTION = re.compile(r"(?<![\w@])@([\w][\w.+-]*[\w])")
VARIABLE = re.compile(r"\{\{\s*([a-z_]+(?:\.[a-z_]+)?)\s*\}\}")
CANNED_VARIABLES = (
    "contact.name",
    "contact.first_name",
    "agent.name",
    "agent.first_name",
    "company.name",
    "workspace.name",
)


def parse_uuid(value: str | None) -> uuid.UUID | None:
    """A UUID from a form or query value; None when empty or malformed."""
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def display_name(user: User | None) -> str:
    """How a colleague is named on screen."""
    if user is None:
        return ""
    return user.name or user.email


def handle(user: User) -> str:
    """What follows the @ to mention a colleague: the start of their e-mail."""
    return user.email.split("@", 1)[0].lower()


def first_name(name: str) -> str:
    return name.split()[0] if name.strip() else ""


# -- reads shared by the parts of one page ---------------------------------------------------


async def _once(session: AsyncSession, key: str, load: Callable[[], Awaitable[T]]) -> T:
    # A page is built from parts (header, timeline, reply, panel) that each need the
    # workspace's users, teams and channels: read them once per request.
    cache: dict[str, Any] = session.info.setdefault("web.reads", {})
    if key not in cache:
        cache[key] = await load()
    value: T = cache[key]
    return value


async def users_of(session: AsyncSession, workspace_id: uuid.UUID) -> list[User]:
    """The workspace's users (read once per request)."""
    return await _once(session, "users", lambda: auth.list_users(session, workspace_id))


async def teams_of(session: AsyncSession, workspace_id: uuid.UUID) -> list[Team]:
    """The workspace's teams (read once per request)."""
    return await _once(session, "teams", lambda: auth.list_teams(session, workspace_id))


# -- channels --------------------------------------------------------------------------------


async def channel_infos(session: AsyncSession, workspace_id: uuid.UUID) -> list[ChannelInfo]:
    """The workspace's channels as badges, each with its own colour."""
    rows = await _once(
        session, "channels", lambda: channel_repository.list_all(session, workspace_id)
    )
    return [
        ChannelInfo(
            id=c.id,
            name=c.name,
            type=c.type,
            type_label=get_adapter(c.type).label,
            color=index % COLOURS,
            active=c.active,
        )
        for index, c in enumerate(rows)
    ]


def _by_id(infos: Iterable[ChannelInfo]) -> dict[uuid.UUID, ChannelInfo]:
    return {i.id: i for i in infos}


# -- the inbox -------------------------------------------------------------------------------


def read_filters(params: dict[str, str]) -> InboxFilters:
    """The inbox filters of a query string; unknown values fall back to the defaults."""
    filters = InboxFilters(
        view=params.get("view", "all"),
        status=params.get("status", "open"),
        team=params.get("team", ""),
        channel=params.get("channel", ""),
        label=params.get("label", "").strip().lower()[:64],
        q=params.get("q", "").strip()[:200],
    )
    if filters.view not in VIEWS:
        filters.view = "all"
    if filters.status not in STATUS_FILTERS:
        filters.status = "open"
    filters.team = str(parse_uuid(filters.team) or "")
    filters.channel = str(parse_uuid(filters.channel) or "")
    return filters


async def _rows(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    items: Sequence[ConversationOut],
    channel_map: dict[uuid.UUID, ChannelInfo],
    users: dict[uuid.UUID, User],
) -> list[InboxRow]:
    contact_map = await repository.contacts_by_id(
        session, workspace_id, [c.contact_id for c in items]
    )
    last = await repository.last_messages(session, workspace_id, [c.id for c in items])
    rows = []
    for item in items:
        message = last.get(item.id)
        contact = contact_map.get(item.contact_id)
        preview = " ".join((message.text if message else "").split())
        if len(preview) > PREVIEW_CHARS:
            preview = preview[: PREVIEW_CHARS - 1] + "…"
        assignee = users.get(item.assignee_id) if item.assignee_id else None
        rows.append(
            InboxRow(
                conversation=item,
                contact_name=(contact.name if contact else "") or "",
                preview=preview,
                preview_is_note=message is not None and message.kind == "note",
                preview_outbound=message is not None and message.kind in ("outbound", "bot"),
                channel=channel_map.get(item.last_channel_id) if item.last_channel_id else None,
                assignee=display_name(assignee) if assignee else None,
            )
        )
    return rows


async def inbox(
    session: AsyncSession,
    web: WebUser,
    filters: InboxFilters,
    *,
    cursor: str | None = None,
    selected: uuid.UUID | None = None,
) -> InboxView:
    """The inbox: the REST API's list of conversations, with names, previews and counts."""
    workspace_id = web.workspace.id
    page = await conversation_views.inbox(
        session,
        workspace_id,
        # A search looks through every status: the customer may be in a resolved case.
        status=None if filters.status == "any" or filters.q else filters.status,
        channel_id=parse_uuid(filters.channel),
        assignee_id=web.user.id if filters.view == "mine" else None,
        unassigned=filters.view == "unassigned",
        team_id=parse_uuid(filters.team),
        label=filters.label or None,
        contact_id=None,
        cursor=cursor,
        limit=INBOX_PAGE,
        q=filters.q or None,
    )
    infos = await channel_infos(session, workspace_id)
    users = {u.id: u for u in await users_of(session, workspace_id)}
    return InboxView(
        filters=filters,
        rows=await _rows(session, workspace_id, page.items, _by_id(infos), users),
        next_cursor=page.next_cursor,
        counts=await repository.status_counts(session, workspace_id, web.user.id),
        channels=infos,
        teams=await teams_of(session, workspace_id),
        selected=selected,
    )


# -- one conversation ------------------------------------------------------------------------


async def header(session: AsyncSession, web: WebUser, conversation_id: uuid.UUID) -> HeaderView:
    """The conversation's owner, team, status, priority and labels, with what they can be."""
    workspace_id = web.workspace.id
    conversation = await conversation_views.conversation(session, workspace_id, conversation_id)
    contact = await contact_repository.get(session, workspace_id, conversation.contact_id)
    users = [u for u in await users_of(session, workspace_id) if u.active]
    teams = await teams_of(session, workspace_id)
    infos = _by_id(await channel_infos(session, workspace_id))
    return HeaderView(
        conversation=conversation,
        contact_name=contact.name,
        assignee=next((u for u in users if u.id == conversation.assignee_id), None),
        team=next((t for t in teams if t.id == conversation.team_id), None),
        users=users,
        teams=teams,
        channel=infos.get(conversation.last_channel_id) if conversation.last_channel_id else None,
    )


def segments(text: str, handles: set[str]) -> list[Segment]:
    """A note's text cut around the @mentions of colleagues."""
    found: list[Segment] = []
    position = 0
    for match in MENTION.finditer(text):
        if match.group(1).lower() not in handles:
            continue
        if match.start() > position:
            found.append(Segment(text[position : match.start()]))
        found.append(Segment(match.group(0), mention=True))
        position = match.end()
    if position < len(text):
        found.append(Segment(text[position:]))
    return found


def _attachments(message: Message, t: Translate) -> list[AttachmentView]:
    views = []
    for attachment in message.attachments or []:
        if not isinstance(attachment, dict):
            continue
        kind = str(attachment.get("type") or "file")
        label = str(
            attachment.get("filename")
            or attachment.get("file_name")
            or attachment.get("title")
            or attachment.get("name")
            or t(_("Attachment"))
        )
        url = None
        stored = parse_uuid(str(attachment.get("attachment_id") or ""))
        if stored is not None:
            url = f"/app/attachments/{stored}"
        elif attachment.get("url"):
            url = str(attachment["url"])
        views.append(AttachmentView(label=label, kind=kind, url=url))
    return views


def _direction(message: Message) -> str:
    if message.kind == "inbound":
        return "in"
    if message.kind == "note":
        return "note"
    if message.kind == "call":
        return "call"
    if message.kind == "bot" or message.sender_type == "bot":
        return "bot"
    if message.sender_type == "system":
        return "system"
    return "out"


def _author(message: Message, contact_name: str, users: dict[uuid.UUID, User], t: Translate) -> str:
    if message.kind == "inbound":
        return contact_name or t(_("Customer"))
    if message.sender_type == "bot" or message.kind == "bot":
        return t(_("Bot"))
    if message.sender_type == "system":
        return "Hilo"
    if message.sender_type == "token":
        return t(_("API"))
    user = users.get(message.sender_id) if message.sender_id else None
    return display_name(user) or t(_("Agent"))


def _actor_name(event: Event, contact_name: str, users: dict[uuid.UUID, User], t: Translate) -> str:
    if event.actor_type == "user":
        user = users.get(parse_uuid(event.actor_id)) if event.actor_id else None  # type: ignore[arg-type]
        return display_name(user) or t(_("An agent"))
    if event.actor_type == "contact":
        return contact_name or t(_("The customer"))
    if event.actor_type == "bot":
        return t(_("The bot"))
    if event.actor_type == "token":
        return t(_("The API"))
    return "Hilo"


def _system_line(
    event: Event,
    *,
    contact_name: str,
    users: dict[uuid.UUID, User],
    teams: dict[uuid.UUID, Team],
    infos: dict[uuid.UUID, ChannelInfo],
    t: Translate,
) -> tuple[str, str] | None:
    """The sentence (and its icon) a change shows as in the timeline."""
    data = event.data or {}
    who = _actor_name(event, contact_name, users, t)

    def channel(value: Any) -> str:
        info = infos.get(parse_uuid(str(value or "")) or uuid.UUID(int=0))
        return info.name if info else t(_("another channel"))

    kind = event.type
    if kind == "conversation.created":
        return "✦", t(_("Conversation started on {channel}."), channel=channel(event.channel_id))
    if kind == "conversation.channel_switched":
        target = infos.get(event.channel_id) if event.channel_id else None
        moved_to = MOVED_TO.get(target.type) if target else None
        return "⇄", t(
            _("The customer moved from {source} to {target}."),
            source=channel(data.get("from_channel_id")),
            target=t(moved_to) if moved_to else channel(event.channel_id),
        )
    if kind in ("conversation.status_changed", "conversation.reopened", "conversation.resolved"):
        status = str(data.get("to", ""))
        if data.get("reason") == "customer_replied":
            return "↺", t(_("The customer wrote again: the conversation is open."))
        if kind == "conversation.resolved":
            return "✔", t(_("{who} resolved the conversation."), who=who)
        if kind == "conversation.reopened":
            return "↺", t(_("{who} reopened the conversation."), who=who)
        if status == "snoozed" and data.get("snoozed_until"):
            return "⏸", t(
                _("{who} snoozed the conversation until {until}."),
                who=who,
                until=str(data["snoozed_until"])[:16].replace("T", " "),
            )
        label = t(STATUS_LABELS.get(status, status))
        return "•", t(_("{who} set the status to {status}."), who=who, status=label)
    if kind == "conversation.assigned":
        assignee = users.get(parse_uuid(str(data.get("assignee_id") or "")) or uuid.UUID(int=0))
        if (
            event.actor_type == "user"
            and assignee is not None
            and str(assignee.id) == event.actor_id
        ):
            return "☺", t(_("{who} took the conversation."), who=who)
        return "☺", t(
            _("{who} assigned the conversation to {assignee}."),
            who=who,
            assignee=display_name(assignee) or t(_("an agent")),
        )
    if kind == "conversation.unassigned":
        return "☺", t(_("{who} unassigned the conversation."), who=who)
    if kind == "conversation.team_changed":
        team = teams.get(parse_uuid(str(data.get("team_id") or "")) or uuid.UUID(int=0))
        if team is None:
            return "⚑", t(_("{who} removed the team."), who=who)
        if data.get("reason") == "bot_handoff":
            return "⚑", t(_("The bot handed the conversation over to {team}."), team=team.name)
        return "⚑", t(_("{who} moved the conversation to {team}."), who=who, team=team.name)
    if kind == "conversation.priority_changed":
        priority = t(PRIORITY_LABELS.get(str(data.get("to")), str(data.get("to"))))
        return "!", t(_("{who} set the priority to {priority}."), who=who, priority=priority)
    if kind == "conversation.label_added":
        return "#", t(_("{who} added the label {label}."), who=who, label=data.get("label", ""))
    if kind == "conversation.label_removed":
        return "#", t(_("{who} removed the label {label}."), who=who, label=data.get("label", ""))
    if kind == "contact.opted_out":
        return "⊘", t(_("The customer opted out of {channel}."), channel=channel(event.channel_id))
    if kind == "contact.opted_in":
        return "✓", t(
            _("The customer opted back in to {channel}."), channel=channel(event.channel_id)
        )
    if kind == "bot.handoff":
        return "⚑", t(_("The bot handed the conversation over to a person."))
    return None


# How many messages a conversation opens with; "show earlier" doubles it. A long conversation
# (hundreds of messages) was rendered whole on every open and on every live refresh.
TIMELINE_WINDOW = 100
TIMELINE_MAX = 20_000


async def timeline(
    session: AsyncSession,
    web: WebUser,
    conversation_id: uuid.UUID,
    t: Translate,
    *,
    show: int = TIMELINE_WINDOW,
) -> TimelineView:
    """The unified timeline: every message on every channel and every change, in order; the
    latest ``show`` messages and the changes since the first of them.

    The order is the event log's (the order of commits), not the timestamps': a channel switch
    recorded while its message was processed shows before that message, though stamped later.
    """
    workspace_id = web.workspace.id
    conversation = await conversation_repository.get(session, workspace_id, conversation_id)
    contact = await contact_repository.get(session, workspace_id, conversation.contact_id)
    latest = await conversation_repository.messages_page(
        session,
        workspace_id,
        conversation_id=conversation.id,
        after=None,
        limit=show + 1,
        newest_first=True,
    )
    more = len(latest) > show
    messages = latest[:show][::-1]
    # Only the ids and times of the shown messages' events: there are three per reply.
    added = await repository.message_event_order(
        session, workspace_id, conversation.id, MESSAGE_EVENTS, [m.id for m in messages]
    )
    order = {message_id: event_id for message_id, event_id, _at in added if message_id}
    # With earlier messages left out, the changes shown are those after the first shown
    # message was added (all of them if no shown message has its event: an import).
    start = min(order.values(), default=None) if more else None
    changes = await repository.conversation_events(
        session, workspace_id, conversation.id, TIMELINE_EVENTS, after_id=start
    )
    users = {u.id: u for u in await users_of(session, workspace_id)}
    teams = {team.id: team for team in await teams_of(session, workspace_id)}
    infos = _by_id(await channel_infos(session, workspace_id))
    handles = {handle(u) for u in users.values()}
    stamps = sorted(
        [(at, event_id) for _m, event_id, at in added] + [(e.created_at, e.id) for e in changes]
    )

    def position(message: Message) -> float:
        if message.id in order:
            return float(order[message.id])
        # A message without its event (imported): just before the first event after it.
        index = bisect.bisect_right(stamps, (message.created_at, sys.maxsize))
        return stamps[index][1] - 0.5 if index < len(stamps) else float("inf")

    keyed: list[tuple[float, TimelineItem]] = []
    for message in messages:
        data = message.data or {}
        call = data.get("call") if isinstance(data.get("call"), dict) else None
        if call is not None:
            call = {
                **call,
                "label": t(CALL_LABELS.get(str(call.get("direction")), _("Call"))),
                "duration": _duration(call.get("duration")),
            }
        item = TimelineItem(
            kind="message",
            at=message.created_at,
            id=str(message.id),
            text=message.text,
            direction=_direction(message),
            author=_author(message, contact.name, users, t),
            channel=infos.get(message.channel_id) if message.channel_id else None,
            status=message.status,
            error=message.error,
            subject=str(data["subject"]) if data.get("subject") else None,
            full_text=(
                str(data["full_text"])
                if data.get("full_text") and data["full_text"] != message.text
                else None
            ),
            segments=segments(message.text, handles) if message.kind == "note" else [],
            attachments=_attachments(message, t),
            call=call,
        )
        keyed.append((position(message), item))
    for event in changes:
        line = _system_line(
            event, contact_name=contact.name, users=users, teams=teams, infos=infos, t=t
        )
        if line is not None:
            at = (
                conversation.created_at
                if event.type == "conversation.created"
                else event.created_at
            )
            item = TimelineItem(kind="system", at=at, id=f"e{event.id}", icon=line[0], text=line[1])
            keyed.append((float(event.id), item))
    keyed.sort(key=lambda pair: pair[0])
    return TimelineView([item for _key, item in keyed], show=show, more=more)


def _duration(value: Any) -> str:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return ""
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


async def reply(
    session: AsyncSession,
    web: WebUser,
    conversation_id: uuid.UUID,
    t: Translate,
    *,
    mode: str = "reply",
    error: str | None = None,
    text: str = "",
) -> ReplyView:
    """The reply box: the channels the customer can be reached on, the customer's last one
    first, each with the reason it cannot be used and its own sending rules."""
    workspace_id = web.workspace.id
    conversation = await conversation_repository.get(session, workspace_id, conversation_id)
    rows = await channel_repository.list_all(session, workspace_id)
    infos = _by_id(await channel_infos(session, workspace_id))
    options: list[ReplyChannel] = []
    for channel in rows:
        reason = None
        try:
            await channels.check_reachable(session, channel, conversation.contact_id)
        except HiloError as exc:
            reason = t(exc.message, **exc.params)
        option = ReplyChannel(channel=infos[channel.id], reachable=reason is None, reason=reason)
        if reason is None:
            option = await _with_sending_rules(session, channel, conversation.contact_id, option, t)
        options.append(option)
    reachable = [o for o in options if o.reachable]
    default = next(
        (o.channel.id for o in reachable if o.channel.id == conversation.last_channel_id),
        reachable[0].channel.id if reachable else None,
    )
    reachable.sort(key=lambda o: o.channel.id != default)
    users = [u for u in await users_of(session, workspace_id) if u.active]
    return ReplyView(
        conversation_id=conversation.id,
        channels=reachable + [o for o in options if not o.reachable],
        default_channel_id=default,
        mode=mode,
        error=error,
        text=text,
        handles=[(handle(u), display_name(u)) for u in users],
    )


async def _with_sending_rules(
    session: AsyncSession,
    channel: Channel,
    contact_id: uuid.UUID,
    option: ReplyChannel,
    t: Translate,
) -> ReplyChannel:
    """Whether a free-form reply may go now (WhatsApp's 24-hour window) and the templates
    the channel offers instead."""
    templates = await channels.templates(session, channel.workspace_id, channel.id)
    if not templates:
        return option
    try:
        await channels.check_send(
            session, channel, contact_id, text="…", template=None, attachments=[]
        )
    except HiloError as exc:
        return ReplyChannel(
            channel=option.channel,
            reachable=True,
            reason=None,
            window_open=False,
            window_message=t(exc.message, **exc.params),
            templates=[
                {"name": x.name, "language": x.language, "body": x.body, "params": x.params}
                for x in templates
            ],
        )
    return ReplyChannel(
        channel=option.channel,
        reachable=True,
        reason=None,
        window_open=True,
        templates=[
            {"name": x.name, "language": x.language, "body": x.body, "params": x.params}
            for x in templates
        ],
    )


async def panel(
    session: AsyncSession, web: WebUser, conversation_id: uuid.UUID, t: Translate
) -> PanelView:
    """The context panel: who the customer is, what they bought, how they reach us."""
    workspace_id = web.workspace.id
    conversation = await conversation_repository.get(session, workspace_id, conversation_id)
    view = await contacts.get_view(session, workspace_id, conversation.contact_id)
    row = await contact_repository.get(session, workspace_id, view.id)
    company = (
        await get_scoped(session, Company, row.company_id, workspace_id) if row.company_id else None
    )
    deals = await crm.list_deals(
        session, workspace_id, contact_id=row.id, company_id=None, cursor=None, limit=20
    )
    infos_list = await channel_infos(session, workspace_id)
    infos = _by_id(infos_list)
    users = {u.id: u for u in await users_of(session, workspace_id)}
    past_page = await conversation_views.inbox(
        session,
        workspace_id,
        status=None,
        channel_id=None,
        assignee_id=None,
        unassigned=False,
        team_id=None,
        label=None,
        contact_id=row.id,
        cursor=None,
        limit=20,
    )
    past_items = [c for c in past_page.items if c.id != conversation.id]
    per_channel = [
        ChannelContact(channel=infos[channel_id], last_at=last_at, count=count)
        for channel_id, last_at, count in await repository.last_contact_per_channel(
            session, workspace_id, row.id
        )
        if channel_id in infos
    ]
    per_channel.sort(key=lambda c: c.last_at, reverse=True)
    preferred_id = parse_uuid(str((row.attributes or {}).get("preferred_channel_id") or ""))
    preferred = infos.get(preferred_id) if preferred_id else None
    if preferred is None and per_channel:
        preferred = max(per_channel, key=lambda c: (c.count, c.last_at)).channel
    opted_out = [
        info for info in infos_list if await consent.is_opted_out(session, row.id, info.id)
    ]
    return PanelView(
        conversation_id=conversation.id,
        contact=view,
        row=row,
        company=company,
        deals=deals.items,
        past=await _rows(session, workspace_id, past_items, infos, users),
        preferred=preferred,
        per_channel=per_channel,
        duplicates=await duplicates(session, workspace_id, row, t),
        opted_out=opted_out,
    )


def _phone_forms(value: str, region: str) -> set[str]:
    """The ways one phone number is written: E.164, without "+", the national number, and
    Mexico's and Argentina's mobile prefixes."""
    e164 = contacts.normalise_phone(value, region) or value
    digits = e164.lstrip("+")
    forms = {e164, digits}
    for prefix, mobile in (("52", "521"), ("54", "549")):
        if digits.startswith(mobile):
            forms |= {"+" + prefix + digits[len(mobile) :], prefix + digits[len(mobile) :]}
        elif digits.startswith(prefix):
            forms |= {"+" + mobile + digits[len(prefix) :], mobile + digits[len(prefix) :]}
    return forms


def _email_forms(value: str) -> set[str]:
    """The ways one mailbox is written: case, and Gmail's dots and +tags."""
    email = contacts.normalise_email(value) or value.lower()
    local, _sep, domain = email.partition("@")
    forms = {email, value}
    if domain in ("gmail.com", "googlemail.com"):
        plain = local.split("+", 1)[0].replace(".", "")
        forms |= {f"{plain}@gmail.com", f"{plain}@googlemail.com"}
    elif "+" in local:
        forms.add(f"{local.split('+', 1)[0]}@{domain}")
    return forms


async def duplicates(
    session: AsyncSession, workspace_id: uuid.UUID, contact: Contact, t: Translate
) -> list[Duplicate]:
    """Contacts that are probably the same person: the merge suggestions recorded at ingest,
    and anyone with the same phone or e-mail written another way."""
    identities = await contact_repository.identities_of(session, workspace_id, [contact.id])
    region = (await session.get_one(Workspace, workspace_id)).default_region
    forms: dict[str, str] = {}
    for identity in identities:
        if identity.kind in ("phone", "whatsapp", "sms"):
            for form in _phone_forms(identity.value, region):
                forms[form] = t(SAME["phone"])
        elif identity.kind == "email":
            for form in _email_forms(identity.value):
                forms[form] = t(SAME["email"])
    reasons: dict[uuid.UUID, str] = {}
    for identity in await repository.identities_matching(
        session, workspace_id, sorted(forms), exclude_contact=contact.id
    ):
        reasons.setdefault(identity.contact_id, forms.get(identity.value, ""))
    for suggestion in await contact_repository.suggestions_for(session, workspace_id, contact.id):
        other_id = (
            suggestion.candidate_id
            if suggestion.contact_id == contact.id
            else suggestion.contact_id
        )
        kind = suggestion.reason.removeprefix("same ")
        reasons.setdefault(other_id, t(SAME.get(kind, suggestion.reason)))
    found: list[Duplicate] = []
    seen: set[uuid.UUID] = set()
    for other_id, reason in reasons.items():
        try:
            other = await contact_repository.get(session, workspace_id, other_id)
        except HiloError:
            continue
        if other.id == contact.id or other.id in seen or other.merged_into_id is not None:
            continue
        seen.add(other.id)
        theirs = await contact_repository.identities_of(session, workspace_id, [other.id])
        found.append(Duplicate(other, reason, [i.value for i in theirs]))
    return found


async def conversation(
    session: AsyncSession, web: WebUser, conversation_id: uuid.UUID, t: Translate
) -> ConversationView:
    """Everything the conversation page shows."""
    return ConversationView(
        header=await header(session, web, conversation_id),
        timeline=await timeline(session, web, conversation_id, t),
        reply=await reply(session, web, conversation_id, t),
        panel=await panel(session, web, conversation_id, t),
    )


# -- actions ---------------------------------------------------------------------------------


async def do_send(
    session: AsyncSession,
    web: WebUser,
    conversation_id: uuid.UUID,
    *,
    text: str,
    channel_id: uuid.UUID | None,
    note: bool,
    template: conversations.TemplateChoice | None = None,
) -> Message:
    """A reply on the chosen channel, or an internal note (mentions tell the colleagues)."""
    message = await conversations.do_create_message(
        session,
        workspace_id=web.workspace.id,
        conversation_id=conversation_id,
        text=text,
        channel_id=channel_id,
        private=note,
        actor=web.actor,
        sender_id=web.user.id,
        template=template,
    )
    if note:
        users = await auth.list_users(session, web.workspace.id)
        by_handle = {handle(u): u for u in users}
        mentioned = sorted(
            {
                str(by_handle[m.group(1).lower()].id)
                for m in MENTION.finditer(text)
                if m.group(1).lower() in by_handle
            }
        )
        if mentioned:
            events.record(
                session,
                "note.mentioned",
                workspace_id=web.workspace.id,
                actor=web.actor,
                conversation_id=message.conversation_id,
                contact_id=message.contact_id,
                message_id=message.id,
                data={"user_ids": mentioned},
            )
    return message


async def do_update(
    session: AsyncSession, web: WebUser, conversation_id: uuid.UUID, fields: dict[str, Any]
) -> None:
    """Status, snooze, assignee, team or priority: the REST API's PATCH."""
    await conversations.do_update(
        session,
        workspace_id=web.workspace.id,
        conversation_id=conversation_id,
        changes=conversations.Changes(fields),
        actor=web.actor,
    )


async def do_label(
    session: AsyncSession, web: WebUser, conversation_id: uuid.UUID, label: str, *, add: bool
) -> None:
    """Add or remove a label."""
    await conversations.do_label(
        session,
        workspace_id=web.workspace.id,
        conversation_id=conversation_id,
        label=label,
        add=add,
        actor=web.actor,
    )


async def do_merge(
    session: AsyncSession, web: WebUser, conversation_id: uuid.UUID, other_id: uuid.UUID
) -> Contact:
    """Fold another contact into the conversation's contact."""
    conversation = await conversation_repository.get(session, web.workspace.id, conversation_id)
    return await contacts.do_merge(
        session,
        workspace_id=web.workspace.id,
        survivor_id=conversation.contact_id,
        absorbed_id=other_id,
        actor=web.actor,
    )


async def merge_candidate(
    session: AsyncSession, web: WebUser, conversation_id: uuid.UUID, other_id: uuid.UUID
) -> tuple[Contact, Contact, list[str]]:
    """The two contacts of a merge about to be confirmed, and the other one's identities."""
    conversation = await conversation_repository.get(session, web.workspace.id, conversation_id)
    survivor = await contact_repository.get(session, web.workspace.id, conversation.contact_id)
    other = await contact_repository.get(session, web.workspace.id, other_id)
    contacts.check_merge(survivor, other)
    identities = await contact_repository.identities_of(session, web.workspace.id, [other.id])
    return survivor, other, [i.value for i in identities]


async def search_contacts(
    session: AsyncSession, web: WebUser, conversation_id: uuid.UUID, q: str
) -> list[tuple[Contact, list[str]]]:
    """Contacts to merge into the conversation's contact, by name, phone or e-mail."""
    conversation = await conversation_repository.get(session, web.workspace.id, conversation_id)
    if len(q.strip()) < 2:
        return []
    found = await repository.search_contacts(
        session, web.workspace.id, q.strip(), exclude=conversation.contact_id, limit=10
    )
    identities = await contact_repository.identities_of(
        session, web.workspace.id, [c.id for c in found]
    )
    return [(c, [i.value for i in identities if i.contact_id == c.id]) for c in found]


# -- canned responses ------------------------------------------------------------------------


def expand(body: str, values: dict[str, str]) -> str:
    """A canned response with its ``{{variables}}`` filled in (unknown ones left as they are).

    Plain replacement, never template evaluation: a canned response cannot run anything.
    """
    return VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), body)


async def canned_for(
    session: AsyncSession, web: WebUser, conversation_id: uuid.UUID, q: str
) -> list[CannedView]:
    """Canned responses matching ``q``, filled in for this conversation's customer."""
    conversation = await conversation_repository.get(session, web.workspace.id, conversation_id)
    contact = await contact_repository.get(session, web.workspace.id, conversation.contact_id)
    company = (
        await get_scoped(session, Company, contact.company_id, web.workspace.id)
        if contact.company_id
        else None
    )
    agent = display_name(web.user)
    values = {
        "contact.name": contact.name,
        "contact.first_name": first_name(contact.name),
        "agent.name": agent,
        "agent.first_name": first_name(agent),
        "company.name": company.name if company else "",
        "workspace.name": web.workspace.name,
    }
    rows = await repository.canned_list(
        session, web.workspace.id, q=q.strip().lstrip("/"), limit=20
    )
    return [CannedView(row, expand(row.body, values)) for row in rows]


def check_canned(shortcut: str, title: str, body: str) -> tuple[str, str, str]:
    """A shortcut of letters, digits and dashes; a title and a body."""
    shortcut = shortcut.strip().lstrip("/").lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", shortcut):
        raise InvalidPayload(
            _("A shortcut has 1 to 64 letters, digits, dashes or underscores."),
            code="invalid_shortcut",
        )
    if not title.strip() or len(title) > 200:
        raise InvalidPayload(_("A canned response needs a title."), code="invalid_title")
    if not body.strip() or len(body) > 10_000:
        raise InvalidPayload(_("A canned response needs its text."), code="invalid_body")
    return shortcut, title.strip(), body.strip()


async def do_save_canned(
    session: AsyncSession,
    web: WebUser,
    *,
    canned_id: uuid.UUID | None,
    shortcut: str,
    title: str,
    body: str,
) -> CannedResponse:
    """Create or change a canned response; shortcuts are unique in a workspace."""
    shortcut, title, body = check_canned(shortcut, title, body)
    existing = await repository.canned_by_shortcut(session, web.workspace.id, shortcut)
    if existing is not None and existing.id != canned_id:
        raise Conflict(_("A canned response with that shortcut exists."), code="canned_exists")
    moment = now()
    if canned_id is None:
        row = CannedResponse(
            workspace_id=web.workspace.id,
            shortcut=shortcut,
            title=title,
            body=body,
            created_by=web.user.id,
            created_at=moment,
            updated_at=moment,
        )
        session.add(row)
        await session.flush()
        event = "canned.created"
    else:
        row = await repository.canned_get(session, web.workspace.id, canned_id)
        row.shortcut, row.title, row.body, row.updated_at = shortcut, title, body, moment
        event = "canned.updated"
    events.record(
        session,
        event,
        workspace_id=web.workspace.id,
        actor=web.actor,
        data={"canned_id": str(row.id), "shortcut": shortcut},
    )
    return row


async def do_delete_canned(session: AsyncSession, web: WebUser, canned_id: uuid.UUID) -> None:
    """Remove a canned response."""
    row = await repository.canned_get(session, web.workspace.id, canned_id)
    await session.delete(row)
    events.record(
        session,
        "canned.deleted",
        workspace_id=web.workspace.id,
        actor=web.actor,
        data={"canned_id": str(row.id), "shortcut": row.shortcut},
    )


# -- administration --------------------------------------------------------------------------


async def channels_admin(session: AsyncSession, web: WebUser) -> list[ChannelAdmin]:
    """Every channel with its webhook address and how to set it up."""
    rows = await channel_repository.list_all(session, web.workspace.id)
    infos = _by_id(await channel_infos(session, web.workspace.id))
    return [
        ChannelAdmin(
            channel=row,
            info=infos[row.id],
            webhook_url=channels.webhook_url(row),
            help=get_adapter(row.type).setup_help,
        )
        for row in rows
    ]


def channel_types() -> list[tuple[str, str, tuple[str, ...]]]:
    """The kinds of channel that can be connected: type, label, providers."""
    return [(name, adapter.label, adapter.providers) for name, adapter in sorted(ADAPTERS.items())]


async def do_reveal_secret(
    session: AsyncSession, web: WebUser, channel_id: uuid.UUID
) -> dict[str, Any]:
    """A channel's credentials, shown to an admin on request and recorded in the trail."""
    channel = await channels.get(session, web.workspace.id, channel_id)
    events.record(
        session,
        "channel.secrets_viewed",
        workspace_id=web.workspace.id,
        actor=web.actor,
        channel_id=channel.id,
    )
    return dict(channels.context(channel).secrets)


async def teams_with_members(
    session: AsyncSession, workspace_id: uuid.UUID
) -> list[tuple[Team, list[User]]]:
    """Each team and who is in it."""
    users = {u.id: u for u in await auth.list_users(session, workspace_id)}
    members = await repository.team_members(session, workspace_id)
    return [
        (
            team,
            sorted(
                (users[m.user_id] for m in members if m.team_id == team.id and m.user_id in users),
                key=display_name,
            ),
        )
        for team in await auth.list_teams(session, workspace_id)
    ]


async def recent_sign_ins(session: AsyncSession, web: WebUser) -> list[Event]:
    """The user's latest sign-ins and failed attempts, for the security page."""
    return await repository.recent_events(
        session,
        web.workspace.id,
        types=("auth.login", "auth.login_failed"),
        actor_id=str(web.user.id),
        limit=10,
    )


def locale_name(code: str | None) -> str:
    return LANGUAGE_NAMES.get((code or "")[:2], code or "")
