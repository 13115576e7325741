"""LangGraph's `auth` hook for the served graphs (`langgraph.json`): see `rapid_agent.serving.auth`."""

from rapid_agent.serving.auth import build_auth
from rapid_agent.serving.process import process_settings

auth = build_auth(process_settings())
