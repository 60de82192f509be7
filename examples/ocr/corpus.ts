/**
 * A reproducible corpus of rendered receipts and invoices for the OCR tests and the
 * benchmark: prices, dates, e-mail addresses, item rows with a right-aligned price, 1 to 30
 * lines, DejaVu Sans, Serif and Mono at 14–48 px, in categories that vary one thing each
 * (colours, tilt, quarter turns, noise, JPEG). The same seed gives the same images.
 */
import {
  type FontName,
  pageText,
  type PageLine,
  renderText,
  type RenderOptions,
  seeded,
} from "./render.js";

export const CATEGORIES = [
  "clean",
  "inverted",
  "coloured",
  "tilted",
  "turned-90",
  "turned-180",
  "turned-270",
  "noise",
  "jpeg",
] as const;
export type Category = (typeof CATEGORIES)[number];

export interface Sample {
  readonly name: string;
  readonly category: Category;
  readonly bytes: Uint8Array;
  /** What was drawn: one line per row, a tab between the columns of a row. */
  readonly text: string;
  readonly lines: number;
}

const SHOPS = ["CITY PHARMACY", "Corner Bakery", "ACME SUPPLIES Ltd", "Blue Harbor Cafe"];
const SHOPS_2 = ["Riverside Market", "NORTH STAR HARDWARE", "Green Leaf Grocer", "Metro Books"];
const STREETS = ["12 Elm Street", "401 Harbor Road", "7 Market Square", "88 King Avenue"];
const ITEMS = [
  "Green Tea",
  "Whole Milk 1L",
  "Rye Bread",
  "Coffee Beans",
  "Paper Towels",
  "AA Batteries",
  "Olive Oil",
  "Dark Chocolate",
  "Notebook A5",
  "USB Cable",
  "Orange Juice",
  "Pasta 500g",
  "Dish Soap",
  "Tomato Sauce",
];
const NAMES = ["billing", "orders", "j.smith", "accounts", "hello", "support"];
const DOMAINS = ["acme-supplies.com", "example.org", "cityshop.net", "mail.co.uk"];

/** A receipt or invoice of `count` lines. */
function document(random: () => number, count: number): PageLine[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const money = (cents: number) => (cents / 100).toFixed(2);
  const date = () =>
    `${int(2019, 2027)}-${String(int(1, 12)).padStart(2, "0")}-${String(int(1, 28)).padStart(2, "0")}`;
  const header: PageLine[] = [
    random() < 0.5 ? pick(SHOPS) : pick(SHOPS_2),
    random() < 0.5 ? `INVOICE ${int(1000, 9999)}` : `Receipt No. ${int(100, 99999)}`,
    `Date: ${date()}`,
    `${pick(STREETS)}, Tel ${int(200, 999)}-${int(1000, 9999)}`,
    `Email: ${pick(NAMES)}@${pick(DOMAINS)}`,
  ];
  const lines: PageLine[] = header.slice(0, Math.min(count, 1 + Math.floor(random() * 5)));
  let total = 0;
  while (lines.length < count - 1) {
    const qty = int(1, 5);
    const unit = int(49, 9999);
    total += qty * unit;
    const item = pick(ITEMS);
    lines.push(
      random() < 0.7
        ? [`${item} ${qty} @ ${money(unit)}`, `$${money(qty * unit)}`]
        : `${item} x${qty} ${money(qty * unit)}`,
    );
  }
  if (lines.length < count) lines.push(["TOTAL", `$${money(total)}`]);
  return lines;
}

const PAPERS = ["#fdf6e3", "#e8f4ff", "#fff3cd", "#e6ffe6", "#f0e6ff", "#ffe4e1"];
const INKS = ["#1a237e", "#4a148c", "#004d40", "#3e2723", "#b71c1c", "#263238"];
const DARK = ["#000000", "#102040", "#202020", "#3b0a45"];
const FACES: readonly FontName[] = ["sans", "serif", "mono"];

/** `perCategory` images in each category, from `seed`. */
export function corpus(perCategory: number, seed = 2026): Sample[] {
  const samples: Sample[] = [];
  CATEGORIES.forEach((category, c) => {
    for (let i = 0; i < perCategory; i++) {
      const random = seeded(seed * 1000 + c * 100 + i);
      // Line counts spread over 1–30: a third short, a third medium, a third long.
      const count =
        [1 + Math.floor(random() * 4), 5 + Math.floor(random() * 8)][i % 3] ??
        13 + Math.floor(random() * 18);
      const lines = document(random, count);
      const options: RenderOptions = {
        font: FACES[i % 3]!,
        size: 14 + Math.floor(random() * 35),
        leading: 1.5 + random() * 0.5,
        seed: seed + i,
        ...style(category, random),
      };
      samples.push({
        name: `${category}-${i}`,
        category,
        bytes: renderText(lines, options),
        text: pageText(lines),
        lines: lines.length,
      });
    }
  });
  return samples;
}

function style(category: Category, random: () => number): RenderOptions {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const tilt = () => (random() * 2 - 1) * 5;
  switch (category) {
    case "clean":
      return {};
    case "inverted":
      return { paper: pick(DARK), ink: random() < 0.5 ? "#ffffff" : "#ffe082" };
    case "coloured":
      return { paper: pick(PAPERS), ink: pick(INKS) };
    case "tilted":
      return { rotate: tilt() };
    case "turned-90":
      return { rotate: 90 };
    case "turned-180":
      return { rotate: 180 };
    case "turned-270":
      return { rotate: 270 };
    case "noise":
      return { noise: 20 + random() * 30 };
    case "jpeg":
      return { jpegQuality: 30 + Math.floor(random() * 40), rotate: random() < 0.5 ? tilt() : 0 };
  }
}
