// The open chat's messages, virtualised: only the rows on screen (and a few around) are in
// the DOM, whatever the chat's length. Rows have their own heights, measured once drawn.
// At the bottom, it stays there as messages arrive; reading above, it stays put.
import { useVirtualizer } from "@tanstack/react-virtual";
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef } from "react";
import type { Engine, Snapshot } from "../lib/engine";
import { estimateHeight, messageStatus } from "../lib/state";
import type { Chat, StoredMessage } from "../lib/types";
import { strings } from "../strings";
import { MessageBubble } from "./MessageBubble";

interface Props {
  engine: Engine;
  snap: Snapshot;
  chat: Chat;
  onReply(message: StoredMessage): void;
}

/** Within this many pixels of the end counts as "at the bottom". */
const PINNED_WITHIN_PX = 48;

export function Timeline({ engine, snap, chat, onReply }: Props) {
  const scroller = useRef<HTMLDivElement>(null);
  const pinned = useRef(true);
  const lastTotal = useRef(0);
  const { messages, earlierCount } = snap;
  const count = earlierCount + messages.length;

  // A row not read yet is guessed as tall as the average of those read, so the rows on
  // screen hardly move when the older messages take the placeholders' places.
  const placeholderHeight = useMemo(() => {
    const sample = messages.slice(0, 200);
    return sample.length ? sample.reduce((sum, m) => sum + estimateHeight(m), 0) / sample.length : 60;
  }, [messages]);
  const messageAt = useCallback(
    (index: number): StoredMessage | undefined => messages[index - earlierCount],
    [messages, earlierCount],
  );
  const virtualizer = useVirtualizer({
    count,
    getScrollElement: () => scroller.current,
    estimateSize: (index) => {
      const message = messageAt(index);
      return message ? estimateHeight(message) : placeholderHeight;
    },
    getItemKey: (index) => messageAt(index)?.key ?? `earlier-${index}`,
    overscan: 8,
    paddingStart: 12,
    paddingEnd: 12,
  });

  const toBottom = useCallback(() => {
    const element = scroller.current;
    if (element) element.scrollTop = element.scrollHeight;
  }, []);

  // Opened: the newest message, at the bottom.
  useLayoutEffect(() => {
    pinned.current = true;
    toBottom();
  }, [chat.chatId, toBottom]);

  // A new message at the end: follow it if the reader was at the bottom, or if it is ours.
  const newest = messages.at(-1);
  useLayoutEffect(() => {
    if (!newest) return;
    if (pinned.current || newest.own) {
      pinned.current = true;
      toBottom();
    }
  }, [newest?.key, newest?.own, toBottom]);

  // Rows measured taller or shorter than estimated (an image decoded): still at the bottom.
  const total = virtualizer.getTotalSize();
  useLayoutEffect(() => {
    if (total === lastTotal.current) return;
    lastTotal.current = total;
    if (pinned.current) toBottom();
  }, [total, toBottom]);

  useEffect(() => {
    const element = scroller.current;
    if (!element) return;
    const onScroll = () => {
      pinned.current = element.scrollHeight - element.scrollTop - element.clientHeight <= PINNED_WITHIN_PX;
    };
    element.addEventListener("scroll", onScroll, { passive: true });
    return () => element.removeEventListener("scroll", onScroll);
  }, []);

  return (
    <div className="timeline" ref={scroller} tabIndex={0} role="region" aria-label={strings.messages} data-testid="timeline">
      <ol className="timeline-rows" style={{ height: total }}>
        {virtualizer.getVirtualItems().map((item) => {
          const message = messageAt(item.index);
          return (
            <li
              key={item.key}
              data-index={item.index}
              ref={virtualizer.measureElement}
              className={message ? "row" : "row placeholder"}
              style={{ transform: `translateY(${item.start}px)` }}
            >
              {message ? (
                <MessageBubble
                  engine={engine}
                  snap={snap}
                  message={message}
                  status={messageStatus(message, chat, snap.me)}
                  onReply={onReply}
                />
              ) : (
                <span className="earlier-placeholder">{strings.loadingEarlier}</span>
              )}
            </li>
          );
        })}
      </ol>
    </div>
  );
}
