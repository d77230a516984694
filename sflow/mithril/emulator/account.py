"""The one emulated user: profile, projects, SSH keys and API keys."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sflow.mithril.emulator.ids import Ids
from sflow.mithril.emulator.market import MarketError


@dataclass
class Project:
    fid: str
    name: str
    created_at: float


@dataclass
class SshKey:
    fid: str
    name: str
    project: str
    public_key: str
    created_at: float
    required: bool = False


@dataclass
class ApiKey:
    fid: str
    name: str
    secret: str
    created_at: float
    expires_at: float
    deactivated_at: float | None = None

    def usable(self, now: float) -> bool:
        """A request may authenticate with it: not revoked, not expired."""
        return self.deactivated_at is None and now < self.expires_at


@dataclass
class Account:
    ids: Ids
    created_at: float
    user_fid: str = ""
    email: str = "emulator@example.com"
    user_name: str = "emulator"
    organization_id: str = ""
    projects: list[Project] = field(default_factory=list)
    ssh_keys: dict[str, SshKey] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)

    def __post_init__(self):
        self.user_fid = self.user_fid or self.ids.new("user")
        self.organization_id = self.organization_id or self.ids.new("org")
        if not self.projects:
            self.projects = [Project(self.ids.new("proj"), "default", self.created_at)]

    def project(self, fid: str) -> Project:
        for p in self.projects:
            if p.fid == fid:
                return p
        raise MarketError(f"Project {fid} not found", 404)

    def add_ssh_key(self, now: float, project: str, name: str, public_key: str, required: bool) -> SshKey:
        self.project(project)
        parts = public_key.split()
        if len(parts) < 2 or not (parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-")
                                  or parts[0].startswith("sk-")):
            raise MarketError("public_key is not an OpenSSH public key", 422)
        key = SshKey(self.ids.new("sshkey"), name, project, public_key.strip(), now, required)
        self.ssh_keys[key.fid] = key
        return key

    def keys_of(self, project: str) -> list[SshKey]:
        return [k for k in self.ssh_keys.values() if k.project == project]

    def check_keys(self, project: str, fids: list[str]) -> None:
        for fid in fids:
            key = self.ssh_keys.get(fid)
            if key is None or key.project != project:
                raise MarketError(f"SSH key {fid} not found in project {project}", 400)

    def authorized_keys(self, project: str, fids: list[str]) -> list[str]:
        """The keys an instance accepts: those its launch specification names plus the project's required ones."""
        chosen = [self.ssh_keys[f] for f in fids if f in self.ssh_keys]
        chosen += [k for k in self.keys_of(project) if k.required and k not in chosen]
        return [k.public_key for k in chosen]


    def add_api_key(self, now: float, name: str, expires_at: float) -> ApiKey:
        if expires_at <= now:
            raise MarketError("expires_at must be in the future", 400)
        key = ApiKey(self.ids.new("apikey"), name, "fkey_" + secrets.token_hex(16), now, expires_at)
        self.api_keys[key.fid] = key
        return key

    def revoke_api_key(self, now: float, fid: str) -> None:
        key = self.api_keys.get(fid)
        if key is None or key.deactivated_at is not None:
            raise MarketError(f"API key {fid} not found", 404)
        key.deactivated_at = now

    def api_key_by_secret(self, secret: str) -> ApiKey | None:
        for key in self.api_keys.values():
            if secrets.compare_digest(key.secret, secret):
                return key
        return None


def generate_key_pair() -> tuple[str, str]:
    """A fresh RSA key pair (private PEM, public OpenSSH line), as the real service makes when given none."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public
