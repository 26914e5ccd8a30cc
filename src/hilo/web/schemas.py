"""What the workspace's pages show: plain view objects built by ``web.service``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hilo.contacts.schemas import ContactOut
from hilo.conversations.schemas import ConversationOut
from hilo.crm.schemas import DealOut
from hilo.models import CannedResponse, Channel, Contact, Team, User


@dataclass(frozen=True)
class ChannelInfo:
    """A channel as a badge: its name, what kind of channel it is, and its colour slot."""

    id: uuid.UUID
    name: str
    type: str
    type_label: str
    color: int
    active: bool = True


@dataclass
class InboxFilters:
    """The inbox's filters, as they travel in the query string."""

    view: str = "all"
    status: str = "open"
    team: str = ""
    channel: str = ""
    label: str = ""
    q: str = ""

    def params(self) -> dict[str, str]:
        return {
            "view": self.view,
            "status": self.status,
            "team": self.team,
            "channel": self.channel,
            "label": self.label,
            "q": self.q,
        }


@dataclass(frozen=True)
class InboxRow:
    conversation: ConversationOut
    contact_name: str
    preview: str
    preview_is_note: bool
    preview_outbound: bool
    channel: ChannelInfo | None
    assignee: str | None


@dataclass
class InboxView:
    filters: InboxFilters
    rows: list[InboxRow]
    next_cursor: str | None
    counts: dict[str, int]
    channels: list[ChannelInfo]
    teams: list[Team]
    selected: uuid.UUID | None = None


@dataclass(frozen=True)
class Segment:
    """A piece of a note: plain text, or an @mention of a colleague."""

    text: str
    mention: bool = False


@dataclass(frozen=True)
class AttachmentView:
    label: str
    kind: str
    url: str | None


@dataclass(frozen=True)
class TimelineItem:
    """One line of the unified timeline: a message, a system line, or a day separator."""

    kind: str  # "message", "system", "day"
    at: datetime
    text: str = ""
    id: str = ""
    # Messages only.
    direction: str = ""  # "in", "out", "note", "bot", "system"
    author: str = ""
    channel: ChannelInfo | None = None
    status: str = ""
    error: str | None = None
    subject: str | None = None
    segments: list[Segment] = field(default_factory=list)
    attachments: list[AttachmentView] = field(default_factory=list)
    call: dict[str, Any] | None = None
    icon: str = ""
    # An e-mail's whole text, quoted part included, when the timeline shows it trimmed.
    full_text: str | None = None


@dataclass(frozen=True)
class TimelineView:
    """The latest ``show`` messages of a conversation, with the changes among them."""

    items: list[TimelineItem]
    show: int
    # Earlier messages exist: the timeline offers to show them.
    more: bool


@dataclass(frozen=True)
class ReplyChannel:
    channel: ChannelInfo
    reachable: bool
    reason: str | None
    # The channel's own sending rule, when it has one (WhatsApp's 24-hour window).
    window_open: bool | None = None
    window_message: str | None = None
    templates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ReplyView:
    conversation_id: uuid.UUID
    channels: list[ReplyChannel]
    default_channel_id: uuid.UUID | None
    mode: str = "reply"
    error: str | None = None
    text: str = ""
    handles: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class HeaderView:
    conversation: ConversationOut
    contact_name: str
    assignee: User | None
    team: Team | None
    users: list[User]
    teams: list[Team]
    channel: ChannelInfo | None


@dataclass(frozen=True)
class Duplicate:
    contact: Contact
    reason: str
    identities: list[str]


@dataclass(frozen=True)
class ChannelContact:
    channel: ChannelInfo
    last_at: datetime
    count: int


@dataclass
class PanelView:
    conversation_id: uuid.UUID
    contact: ContactOut
    row: Contact
    company: Any
    deals: list[DealOut]
    past: list[InboxRow]
    preferred: ChannelInfo | None
    per_channel: list[ChannelContact]
    duplicates: list[Duplicate]
    opted_out: list[ChannelInfo]


@dataclass
class ConversationView:
    header: HeaderView
    timeline: TimelineView
    reply: ReplyView
    panel: PanelView


@dataclass(frozen=True)
class CannedView:
    canned: CannedResponse
    expanded: str


@dataclass(frozen=True)
class ChannelAdmin:
    channel: Channel
    info: ChannelInfo
    webhook_url: str
    help: str
