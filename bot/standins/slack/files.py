"""Slack's `files.*` methods: the two-step external upload, sharing into a channel, info and delete."""

from __future__ import annotations

import copy
import mimetypes
import secrets
from typing import Any

from bot.standins.slack.state import SlackWorkspace, Upload
from bot.standins.slack.wire import SlackError, json_arg


async def get_upload_url(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """files.getUploadURLExternal: a one-use URL to POST the bytes to."""
    filename = args.get("filename")
    try:
        length = int(args.get("length"))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise SlackError("invalid_arguments") from exc
    if not filename or length < 0:
        raise SlackError("invalid_arguments")
    key = secrets.token_urlsafe(16)
    file_id = "F" + secrets.token_hex(5).upper()
    ws._uploads[key] = Upload(file_id, str(filename), length, args.get("alt_txt"))
    return {"upload_url": f"{ws.base_url}/upload/v1/{key}", "file_id": file_id}


def _share(ws: SlackWorkspace, files: list[dict[str, Any]], channel: dict[str, Any], thread_ts: Any,
           args: dict[str, Any]) -> None:
    """Post the upload's message in the channel and record the share on each file."""
    message = ws.bot_message(text=str(args.get("initial_comment") or ""), upload=True,
                             files=[copy.deepcopy(f) for f in files])
    if args.get("blocks"):
        message["blocks"] = json_arg(args["blocks"], "invalid_blocks_format")
    stored = ws.store(channel["id"], message, thread_ts)
    share: dict[str, Any] = {
        "ts": stored["ts"],
        "channel_name": channel["name"],
        "team_id": ws.team_id,
    }
    if stored.get("thread_ts"):
        share["thread_ts"] = stored["thread_ts"]
    visibility = "private" if channel["is_private"] else "public"
    for file in files:
        file["shares"].setdefault(visibility, {}).setdefault(channel["id"], []).append(share)
        file["channels" if not channel["is_private"] else "groups"].append(channel["id"])


async def complete_upload(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """files.completeUploadExternal: turn uploaded bytes into files, shared when a channel is named."""
    entries = json_arg(args.get("files"))
    if not isinstance(entries, list) or not entries:
        raise SlackError("invalid_arguments")
    by_id = {u.file_id: (key, u) for key, u in ws._uploads.items()}
    channel_id = args.get("channel_id") or (str(args["channels"]).split(",")[0] if args.get("channels") else None)
    channel = ws.writable(channel_id) if channel_id else None
    thread_ts = args.get("thread_ts")
    if thread_ts and channel is None:
        raise SlackError("invalid_arguments")
    created = []
    for entry in entries:
        found = by_id.get(str(entry.get("id")) if isinstance(entry, dict) else "")
        if found is None or found[1].data is None:
            raise SlackError("file_not_found")
        created.append((entry, found))
    files = []
    for entry, (key, upload) in created:
        assert upload.data is not None  # checked above
        mime = mimetypes.guess_type(upload.filename)[0]
        if mime is None and upload.content_type not in (None, "application/octet-stream"):
            mime = upload.content_type
        file = ws.make_file(upload.file_id, upload.data, upload.filename, mime, entry.get("title"), None)
        if upload.alt_txt:
            file["alt_txt"] = upload.alt_txt
        del ws._uploads[key]
        files.append(file)
    if channel is not None:
        _share(ws, files, channel, thread_ts, args)
    return {"files": [{"id": f["id"], "title": f["title"]} for f in files]}


async def info(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """files.info."""
    file = ws.files.get(str(args.get("file") or ""))
    if file is None:
        raise SlackError("file_not_found")
    return {"file": copy.deepcopy(file), "comments": [], "response_metadata": {"next_cursor": ""}}


async def delete(ws: SlackWorkspace, args: dict[str, Any]) -> dict[str, Any]:
    """files.delete: a bot token deletes only the files its app uploaded; messages keep a tombstone in their place."""
    file_id = str(args.get("file") or "")
    file = ws.files.get(file_id)
    if file is None:
        raise SlackError("file_deleted" if file_id in ws.deleted_files else "file_not_found")
    if file["user"] != ws.bot_user_id:
        raise SlackError("cant_delete_file")
    del ws.files[file_id]
    ws._file_data.pop(file_id, None)
    ws.deleted_files.add(file_id)
    for messages in ws._messages.values():
        for m in messages:
            if any(f.get("id") == file_id for f in m.get("files") or []):
                m["files"] = [{"id": file_id, "mode": "tombstone"} if f.get("id") == file_id else f
                              for f in m["files"]]
    return {}


METHODS = {
    "files.getUploadURLExternal": get_upload_url,
    "files.completeUploadExternal": complete_upload,
    "files.info": info,
    "files.delete": delete,
}
