//! How a [`Tailer`] starts, at its first poll: without a checkpoint, the live file is opened per `start_at`
//! (rotated siblings already there are history); with one, each saved file is found again by identity
//! (inode and fingerprint) wherever it went, a copy of a file truncated in place is found by its content,
//! and what is left is drained in order before the live file. One look at the directory serves it all.

use super::file::{self, mtime, FileReader};
use super::{
    at, open_existing, FileCheckpoint, FileId, Fingerprint, Pending, Rank, Snapshot,
    SourceCheckpoint, TailEvent, Tailer,
};
use crate::config::StartAt;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

/// A saved file found again.
struct Found {
    path: PathBuf,
    file: File,
    at_live: bool,
    /// Its first bytes, as read when it was recognised.
    head: Vec<u8>,
    /// Its metadata as the look saw it, before the listing (the live file) or in it: taken again later,
    /// its length could show a truncate whose copy the listing lacks.
    meta: fs::Metadata,
}

impl Tailer {
    /// First start without a checkpoint: open the live file per `start_at`. Rotated siblings already there
    /// are never read; when the live path is missing, they are remembered so that a file rotated from now
    /// on (before the live path was ever seen) is found as unread.
    pub(super) fn first_open(&mut self, sink: &mut dyn FnMut(TailEvent)) -> io::Result<()> {
        let Snapshot {
            live,
            siblings,
            renamed,
            ..
        } = self.snapshot()?;
        // At a first start the file renamed while we looked is still the one to follow: what was rotated
        // after it is history, as every rotated file already there is (tailing scenario 1).
        let live = live.map(|(file, _)| file).or(renamed.map(|(_, file)| file));
        let Some(file) = live else {
            let newest = siblings.iter().map(|(_, m)| mtime(m)).max();
            self.anchor = Some(newest.unwrap_or((i64::MIN, 0)));
            for (path, meta) in &siblings {
                if Some(mtime(meta)) != newest {
                    continue;
                }
                if let Some(file) = open_existing(path)? {
                    let fp = Fingerprint::of_file(&file)?;
                    self.remember(FileId::of(meta), fp);
                }
            }
            return Ok(());
        };
        let mut r = FileReader::from_file(&self.path, file, self.opts)?;
        if self.start_at == StartAt::End {
            r.seek_to_end(&mut self.chunk)?;
        }
        sink(TailEvent::Opened {
            path: &r.path,
            resumed_at: r.offset,
        });
        self.live = Some(r);
        Ok(())
    }

    /// Restart from a checkpoint: find each saved file again, by identity, wherever it went. Saved rotated
    /// files come first, in their saved order; what the live file became, copies of it and rotated files we
    /// never saw follow in modification-time order. Any error (other than a file being absent) fails the
    /// whole restore, which is tried again from the same checkpoint at the next poll: an unreadable
    /// directory never makes a saved file "lost".
    pub(super) fn restore(
        &mut self,
        saved: SourceCheckpoint,
        sink: &mut dyn FnMut(TailEvent),
    ) -> io::Result<()> {
        self.retired = saved.retired;
        self.anchor = saved.anchor;
        // One look at the directory: the live path opened first, then the listing.
        let mut snap = self.snapshot()?;
        let mut files = Vec::new();
        // Saved files whose inode now holds other content, away from the live path.
        // (The inode is the saved one: `locate` found it by `fc.id`.)
        let mut rewritten: Vec<FileCheckpoint> = Vec::new();
        let saved_live = saved.live.into_iter().map(|c| (c, true));
        for (fc, is_live) in saved
            .draining
            .into_iter()
            .map(|c| (c, false))
            .chain(saved_live)
        {
            let (same, copy) = self.locate(&fc, &mut snap)?;
            let order = |m: &fs::Metadata| if is_live { mtime(m) } else { (i64::MIN, 0) };
            if let Some((found, Some(fp))) = same {
                // The same file: resume it.
                let meta = found.meta;
                let mut r =
                    FileReader::resume(&found.path, found.file, &fc, fp, found.head, self.opts);
                if meta.len() < fc.offset {
                    sink(TailEvent::Truncated { path: &r.path });
                    r.restart();
                }
                if found.at_live && is_live && self.live.is_none() {
                    sink(TailEvent::Opened {
                        path: &r.path,
                        resumed_at: r.offset,
                    });
                    self.live = Some(r);
                    continue;
                }
                if is_live {
                    sink(TailEvent::Rotated {
                        from: &fc.path,
                        to: Some(r.path.clone()),
                    });
                    self.retire_anchor(fc.mtime);
                }
                self.remember(r.id, r.fp.clone());
                files.push(Pending {
                    mtime: order(&meta),
                    reader: r,
                    announce: true,
                    rank: Rank::Other,
                });
                continue;
            }
            if is_live {
                self.retire_anchor(fc.mtime);
            }
            // Rewritten in place (copytruncate) or gone: the rest may be in a copy.
            match copy {
                Some((path, file, fp, head)) => {
                    sink(TailEvent::Truncated { path: &fc.path });
                    let meta = file.metadata()?;
                    let r = FileReader::resume(&path, file, &fc, fp, head, self.opts);
                    self.remember(r.id, r.fp.clone());
                    files.push(Pending {
                        mtime: order(&meta),
                        reader: r,
                        announce: true,
                        rank: Rank::Copy,
                    });
                }
                None => {
                    sink(TailEvent::Lost {
                        path: &fc.path,
                        offset: fc.offset,
                    });
                }
            }
            // The inode now holds other content. At the live path: truncated or replaced in place, read
            // from 0 with the header it had (copytruncate: the writer goes on without one, scenario 26).
            // Elsewhere it may as well be another file that reused the inode (logrotate's next copy): it is
            // judged as any rotated file we never saw, below.
            if let Some((found, None)) = same {
                if found.at_live && self.live.is_none() {
                    let mut r = FileReader::from_file(&found.path, found.file, self.opts)?;
                    r.keep_header(&fc);
                    sink(TailEvent::Opened {
                        path: &r.path,
                        resumed_at: 0,
                    });
                    self.live = Some(r);
                } else {
                    rewritten.push(fc);
                }
            }
        }
        // Rotated files we never saw: none is a file we hold now or the one at the live path; a copy of a
        // file we read is not one either (tailing scenario 24).
        let open_ids: Vec<FileId> = files.iter().map(|p| p.reader.id).collect();
        let mut found = self.discover(&snap, &open_ids, self.anchor)?;
        for p in &mut found {
            if let Some(fc) = rewritten.iter().find(|fc| fc.id == p.reader.id) {
                // A saved file truncated in place, then rotated: its rows go on without a header.
                p.reader.keep_header(fc);
            }
        }
        self.adopt(&found);
        files.extend(found);
        // The file at the live path when we looked is ours from now on, whatever happens to the path next:
        // read from the handle, never by opening the path again (tailing scenario 23).
        if self.live.is_none() {
            if let Some((file, meta)) = snap.live.take() {
                let id = FileId::of(&meta);
                if !self.is_open(id) && !open_ids.contains(&id) {
                    let r = FileReader::from_file(&self.path, file, self.opts)?;
                    sink(TailEvent::Opened {
                        path: &r.path,
                        resumed_at: 0,
                    });
                    self.live = Some(r);
                }
            }
        }
        self.drain(files, sink);
        Ok(())
    }

    /// Where a saved file is now: the file with its inode (at the live path or a rotated sibling) with its
    /// refreshed fingerprint if the content is still the same; and a copy of it (another inode, made since
    /// we last read it, starting with the bytes we read, at least as long as the saved offset), as
    /// copytruncate leaves. The live path's handle is taken from the snapshot when it is the one.
    #[allow(clippy::type_complexity)]
    fn locate(
        &self,
        fc: &FileCheckpoint,
        snap: &mut Snapshot,
    ) -> io::Result<(
        Option<(Found, Option<Fingerprint>)>,
        Option<(PathBuf, File, Fingerprint, Vec<u8>)>,
    )> {
        let mut same = None;
        let mut copy = None;
        if let Some((_, meta)) = snap.live.as_ref() {
            if FileId::of(meta) == fc.id && !self.is_open(fc.id) {
                if let Some((file, meta)) = snap.live.take() {
                    // Judged by the bytes read before the listing (see `snapshot`).
                    let fp = fc.fingerprint.check_prefix(&snap.live_head);
                    same = Some((
                        Found {
                            path: self.path.clone(),
                            file,
                            at_live: true,
                            head: snap.live_head.clone(),
                            meta,
                        },
                        fp,
                    ));
                }
            }
        }
        let live_id = snap.live_id();
        for (path, meta) in &snap.siblings {
            let id = FileId::of(meta);
            if self.is_open(id) || Some(id) == live_id {
                continue;
            }
            if id == fc.id {
                if same.is_some() {
                    continue;
                }
                let Some(file) = snap.open(id, path)? else {
                    continue;
                };
                let head = file::prefix(&file).map_err(at(path))?;
                let fp = fc.fingerprint.check_prefix(&head);
                same = Some((
                    Found {
                        path: path.clone(),
                        file,
                        at_live: false,
                        head,
                        meta: meta.clone(),
                    },
                    fp,
                ));
            } else if copy.is_none() && fc.fingerprint.len > 0 && meta.len() > 0 {
                let Some(file) = snap.open(id, path)? else {
                    continue;
                };
                let head = file::prefix(&file).map_err(at(path))?;
                if let Some(fp) = fc.fingerprint.check_prefix(&head) {
                    copy = Some((path.clone(), file, fp, head));
                }
            }
        }
        Ok((same, copy))
    }
}
