"""Every table, one module each; importing this package registers them all."""

from hilo.models.api_token import ApiToken
from hilo.models.attachment import Attachment
from hilo.models.audit_checkpoint import AuditCheckpoint
from hilo.models.audit_head import AuditHead
from hilo.models.canned_response import CannedResponse
from hilo.models.channel import Channel
from hilo.models.channel_consent import ChannelConsent
from hilo.models.company import Company
from hilo.models.contact import Contact
from hilo.models.contact_identity import ContactIdentity
from hilo.models.conversation import Conversation
from hilo.models.conversation_label import ConversationLabel
from hilo.models.deal import Deal
from hilo.models.event import Event
from hilo.models.inbound_event import InboundEvent
from hilo.models.job import Job
from hilo.models.login_attempt import LoginAttempt
from hilo.models.merge_suggestion import MergeSuggestion
from hilo.models.message import Message
from hilo.models.team import Team
from hilo.models.team_member import TeamMember
from hilo.models.user import User
from hilo.models.user_totp import UserTotp
from hilo.models.web_session import WebSession
from hilo.models.webchat_visitor import WebchatVisitor
from hilo.models.workspace import Workspace

__all__ = [
    "ApiToken",
    "Attachment",
    "AuditCheckpoint",
    "AuditHead",
    "CannedResponse",
    "Channel",
    "ChannelConsent",
    "Company",
    "Contact",
    "ContactIdentity",
    "Conversation",
    "ConversationLabel",
    "Deal",
    "Event",
    "InboundEvent",
    "Job",
    "LoginAttempt",
    "MergeSuggestion",
    "Message",
    "Team",
    "TeamMember",
    "User",
    "UserTotp",
    "WebSession",
    "WebchatVisitor",
    "Workspace",
]
