//! Content types of video files and their companions, by file extension.

/// The `Content-Type` of a file, from the extension of its name: MP4 and
/// fragmented MP4 (`.mp4`, `.m4s`, `.m4v`, `.m4a`), MPEG-TS, HLS playlists,
/// DASH manifests, WebM, Matroska, MP3, AAC, WebVTT, JPEG and PNG;
/// `application/octet-stream` otherwise.
pub fn content_type_for(name: &str) -> &'static str {
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) if !ext.contains('/') => ext.to_ascii_lowercase(),
        _ => return "application/octet-stream",
    };
    match ext.as_str() {
        "mp4" | "m4s" | "m4v" => "video/mp4",
        "m4a" => "audio/mp4",
        "ts" => "video/mp2t",
        "m3u8" => "application/vnd.apple.mpegurl",
        "mpd" => "application/dash+xml",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "aac" => "audio/aac",
        "vtt" => "text/vtt",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}
