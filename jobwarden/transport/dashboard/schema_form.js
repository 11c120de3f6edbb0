// A form generated from a tool's input JSON Schema (as msgspec writes it: $ref into $defs,
// optional members as anyOf [T, null], enums as $defs of {"enum": [...]}).
//
// buildField returns {node, read}; read() gives the value to send, or OMIT to leave the member out.
// What the form cannot express well falls back to a JSON text box for that member.

import { el } from "./dom.js";

export const OMIT = Symbol("omit");
const MAX_DEPTH = 8;

export class FormInputError extends Error {}

function resolve(schema, defs) {
  let seen = 0;
  while (schema && typeof schema.$ref === "string" && seen < MAX_DEPTH) {
    const name = decodeURIComponent(schema.$ref.split("/").pop());
    schema = { ...defs[name], ...withoutRef(schema) };
    seen += 1;
  }
  return schema ?? {};
}

function withoutRef(schema) {
  const rest = { ...schema };
  delete rest.$ref;
  return rest;
}

function nonNullBranch(schema) {
  const branches = schema.anyOf ?? schema.oneOf;
  if (!Array.isArray(branches)) return null;
  const others = branches.filter((b) => b.type !== "null");
  return others.length === 1 && others.length < branches.length ? others[0] : null;
}

function hint(schema) {
  const bounds = [];
  if (schema.minimum !== undefined) bounds.push(`≥ ${schema.minimum}`);
  if (schema.exclusiveMinimum !== undefined) bounds.push(`> ${schema.exclusiveMinimum}`);
  if (schema.maximum !== undefined) bounds.push(`≤ ${schema.maximum}`);
  if (schema.exclusiveMaximum !== undefined) bounds.push(`< ${schema.exclusiveMaximum}`);
  if (schema.contentEncoding === "base64") bounds.push("base64");
  if (schema.format) bounds.push(schema.format);
  return bounds.join(", ");
}

export function buildForm(rootSchema) {
  const defs = rootSchema.$defs ?? {};
  const schema = resolve(rootSchema, defs);
  if (schema.type === "object" && schema.properties) return objectField(schema, defs, "input", 0, true);
  return jsonField(schema, "input", true);
}

function buildField(schema, defs, name, depth, required) {
  const nullable = nonNullBranch(schema);
  if (nullable) return buildField({ ...nullable, default: schema.default }, defs, name, depth, false);
  schema = resolve(schema, defs);
  if (depth > MAX_DEPTH) return jsonField(schema, name, required);
  if (Array.isArray(schema.enum)) return enumField(schema, name, required);
  switch (schema.type) {
    case "string":
      return textField(schema, name, required);
    case "integer":
    case "number":
      return numberField(schema, name, required);
    case "boolean":
      return booleanField(schema, name);
    case "object":
      return schema.properties ? objectField(schema, defs, name, depth, required) : jsonField(schema, name, required);
    case "array":
      return schema.items ? arrayField(schema, defs, name, depth) : jsonField(schema, name, required);
    default:
      return jsonField(schema, name, required);
  }
}

function labelled(name, required, schema, control) {
  const text = required ? `${name} *` : name;
  const extra = hint(schema);
  return el(
    "label",
    { class: "field", title: schema.description ?? false },
    el("span", { text }),
    control,
    extra ? el("small", { class: "hint", text: extra }) : null,
  );
}

function textField(schema, name, required) {
  const input = el("input", { type: "text", name, value: schema.default ?? false });
  return {
    node: labelled(name, required, schema, input),
    read: () => (input.value === "" && !required ? OMIT : input.value),
  };
}

function numberField(schema, name, required) {
  const input = el("input", {
    type: "number",
    name,
    step: schema.type === "integer" ? "1" : "any",
    value: schema.default ?? false,
  });
  return {
    node: labelled(name, required, schema, input),
    read: () => {
      if (input.value === "") return OMIT; // a missing required member: the server names it
      return Number(input.value);
    },
  };
}

function booleanField(schema, name) {
  const input = el("input", { type: "checkbox", name, checked: schema.default === true });
  return { node: labelled(name, false, schema, input), read: () => input.checked };
}

function enumField(schema, name, required) {
  const select = el("select", { name });
  if (!required) select.append(el("option", { value: "", text: "—" }));
  schema.enum.forEach((choice, index) => {
    const text = typeof choice === "string" ? choice : JSON.stringify(choice);
    select.append(el("option", { value: String(index), text }));
  });
  if (schema.default !== undefined) select.value = String(schema.enum.indexOf(schema.default));
  return {
    node: labelled(name, required, schema, select),
    read: () => (select.value === "" ? OMIT : schema.enum[Number(select.value)]),
  };
}

function objectField(schema, defs, name, depth, required) {
  const needed = new Set(schema.required ?? []);
  const fields = Object.entries(schema.properties).map(([member, sub]) => [
    member,
    buildField(sub, defs, member, depth + 1, needed.has(member)),
  ]);
  const legend = schema.title && schema.title !== name ? `${name} (${schema.title})` : name;
  const node = el("fieldset", { class: "object", "data-name": name }, el("legend", { text: legend }));
  if (schema.description) node.append(el("p", { class: "hint", text: schema.description }));
  for (const [, field] of fields) node.append(field.node);
  return {
    node,
    read: () => {
      const value = {};
      for (const [member, field] of fields) {
        const got = field.read();
        if (got !== OMIT) value[member] = got;
      }
      return !required && Object.keys(value).length === 0 ? OMIT : value;
    },
  };
}

function arrayField(schema, defs, name, depth) {
  const items = [];
  const list = el("ol", { class: "items" });
  const add = () => {
    const field = buildField(schema.items, defs, `${name}[${items.length}]`, depth + 1, true);
    const entry = { field };
    const remove = el("button", {
      type: "button",
      text: "Remove",
      onclick: () => {
        items.splice(items.indexOf(entry), 1);
        row.remove();
      },
    });
    const row = el("li", {}, field.node, remove);
    items.push(entry);
    list.append(row);
  };
  const node = el(
    "fieldset",
    { class: "array", "data-name": name },
    el("legend", { text: name }),
    list,
    el("button", { type: "button", text: `Add ${name} item`, onclick: add }),
  );
  return { node, read: () => items.map((entry) => entry.field.read()).filter((v) => v !== OMIT) };
}

function jsonField(schema, name, required) {
  const area = el("textarea", { name, rows: "3", spellcheck: "false" });
  if (schema.default !== undefined) area.value = JSON.stringify(schema.default);
  return {
    node: labelled(`${name} (JSON)`, required, schema, area),
    read: () => {
      if (area.value.trim() === "") return OMIT;
      try {
        return JSON.parse(area.value);
      } catch (error) {
        throw new FormInputError(`${name}: not valid JSON (${error.message})`);
      }
    },
  };
}
