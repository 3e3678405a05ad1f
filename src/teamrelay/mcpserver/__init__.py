"""`/mcp`: the Actions surface (and knowledge search) for MCP clients, over Streamable HTTP."""

from teamrelay.mcpserver.server import RelayMCP, mount_mcp

__all__ = ["RelayMCP", "mount_mcp"]
