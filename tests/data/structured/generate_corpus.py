#!/usr/bin/env python3
"""Writes tests/data/structured/schemas/*.json and invalid/*.json (see README.md).

Strict schemas come from Pydantic v2 models through the same transformation the openai SDK's
strict mode applies (openai.lib._pydantic.to_strict_json_schema): every object gets
additionalProperties false and all of its properties required, a single allOf is merged into
its parent, a $ref with sibling keywords is inlined, and `default: null` is dropped. The others
are written by hand as services send them. Run with Pydantic v2 installed:
  python3 tests/data/structured/generate_corpus.py
"""
import datetime
import enum
import json
import os
import uuid
from typing import Annotated, List, Literal, Optional, Union

from pydantic import BaseModel, Field

HERE = os.path.dirname(os.path.abspath(__file__))


def to_strict(schema, root=None):
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return schema
    for key in ("$defs", "definitions"):
        for name, sub in schema.get(key, {}).items():
            to_strict(sub, root)
    if schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)
        schema["required"] = list(schema["properties"].keys())
        for sub in schema["properties"].values():
            to_strict(sub, root)
    if isinstance(schema.get("items"), dict):
        to_strict(schema["items"], root)
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key, []):
            to_strict(sub, root)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        schema.update(to_strict(all_of[0], root))
        schema.pop("allOf")
    if schema.get("default", 0) is None:
        schema.pop("default")
    ref = schema.get("$ref")
    if ref and len(schema) > 1:
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        merged = dict(target)
        merged.update({k: v for k, v in schema.items() if k != "$ref"})
        schema.clear()
        schema.update(to_strict(merged, root))
    return schema


def strict(model):
    return to_strict(model.model_json_schema())


# ---- Pydantic models (strict mode: no dicts, Optional fields are required-but-nullable) ----
class Color(str, enum.Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Priority(int, enum.Enum):
    low = 1
    medium = 2
    high = 3


class Address(BaseModel):
    street: str
    city: str
    postal_code: str
    country: Literal["US", "CA", "MX"]


class Person(BaseModel):
    name: str
    age: int
    email: Optional[str]
    address: Address


class CalendarEvent(BaseModel):
    name: str
    date: str
    participants: List[str]


class Step(BaseModel):
    explanation: str
    output: str


class MathReasoning(BaseModel):
    steps: List[Step]
    final_answer: str


class ResearchPaper(BaseModel):
    title: str
    authors: List[str]
    abstract: str
    keywords: List[str]


class UIComponent(BaseModel):
    type: Literal["div", "button", "header", "section", "field", "form"]
    label: str
    children: List["UIComponent"]
    attributes: List["Attribute"]


class Attribute(BaseModel):
    name: str
    value: str


UIComponent.model_rebuild()


class ModerationResult(BaseModel):
    is_violating: bool
    category: Optional[Literal["violence", "sexual", "self_harm"]]
    explanation_if_violating: Optional[str]


class WeatherQuery(BaseModel):
    location: str
    unit: Literal["celsius", "fahrenheit"]
    days: int


class OrderItem(BaseModel):
    sku: str
    quantity: int
    unit_price: float


class Order(BaseModel):
    order_id: str
    customer: Person
    items: List[OrderItem]
    status: Literal["pending", "shipped", "delivered", "cancelled"]
    notes: Optional[str]


class Entity(BaseModel):
    text: str
    label: Literal["PERSON", "ORG", "LOC", "DATE", "MISC"]
    start: int
    end: int


class NerResult(BaseModel):
    entities: List[Entity]


class Sentiment(BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    confidence: float


class TaskItem(BaseModel):
    title: str
    color: Color
    priority: Priority
    done: bool


class TodoList(BaseModel):
    owner: str
    tasks: List[TaskItem]


class Cat(BaseModel):
    pet_type: Literal["cat"]
    meows: int


class Dog(BaseModel):
    pet_type: Literal["dog"]
    barks: float


class PetOwner(BaseModel):
    name: str
    pet: Union[Cat, Dog]


class SqlQuery(BaseModel):
    table_name: Literal["users", "orders", "products"]
    columns: List[str]
    conditions: List["Condition"]
    order_by: Literal["asc", "desc"]


class Condition(BaseModel):
    column: str
    operator: Literal["=", ">", "<", "<=", ">=", "!="]
    value: Union[str, int, float, bool]


SqlQuery.model_rebuild()


class ExtractedInvoice(BaseModel):
    invoice_number: str
    vendor: str
    total: float
    currency: Literal["USD", "EUR", "GBP"]
    line_items: List[OrderItem]
    paid: bool
    due_date: Optional[str]


class Translation(BaseModel):
    source_language: str
    target_language: str
    translated_text: str


class Classification(BaseModel):
    labels: List[Literal["bug", "feature", "question", "docs"]]
    is_duplicate: bool
    duplicate_of: Optional[int]


class Movie(BaseModel):
    title: str
    year: int
    genres: List[str]
    rating: Optional[float]


class MovieList(BaseModel):
    movies: List[Movie]


class Node(BaseModel):
    value: int
    next: Optional["Node"]


class Comment(BaseModel):
    author: str
    body: str
    replies: List["Comment"]


class Thread(BaseModel):
    title: str
    comments: List[Comment]


class FunctionArgs(BaseModel):
    query: str
    max_results: int
    include_archived: bool


class Coordinates(BaseModel):
    latitude: float
    longitude: float


class Place(BaseModel):
    name: str
    coordinates: Coordinates
    tags: List[str]
    kind: Literal["restaurant", "museum", "park"]


class Itinerary(BaseModel):
    days: List[List[Place]]


class Matrix(BaseModel):
    rows: List[List[int]]


class Review(BaseModel):
    product: str
    pros: List[str]
    cons: List[str]
    score: int
    recommend: bool


class ChainOfThought(BaseModel):
    thoughts: List[str]
    answer: Union[int, str, None]


class EmailDraft(BaseModel):
    to: List[str]
    cc: List[str]
    subject: str
    body: str
    urgent: bool


class Patient(BaseModel):
    patient_id: str
    symptoms: List[str]
    severity: Literal["mild", "moderate", "severe"]
    temperature_c: Optional[float]
    allergies: Optional[List[str]]


class CodeReview(BaseModel):
    file: str
    line: int
    issue: str
    suggestion: Optional[str]
    severity: Literal["info", "warning", "error"]


class CodeReviewList(BaseModel):
    reviews: List[CodeReview]
    summary: str


class KeyValue(BaseModel):
    key: str
    value: str


class Config(BaseModel):
    entries: List[KeyValue]
    version: Literal[1, 2]


class Question(BaseModel):
    question: str
    options: List[str]
    correct_index: int
    explanation: str


class Quiz(BaseModel):
    topic: str
    questions: List[Question]


class Expr(BaseModel):
    op: Literal["add", "sub", "mul", "div", "num"]
    value: Optional[float]
    args: List["Expr"]


class Recipe(BaseModel):
    name: str
    servings: int
    ingredients: List["Ingredient"]
    steps: List[str]


class Ingredient(BaseModel):
    name: str
    amount: float
    unit: Literal["g", "ml", "cup", "tbsp", "tsp", "piece"]


Recipe.model_rebuild()


class JobPosting(BaseModel):
    title: str
    company: str
    remote: bool
    salary_min: Optional[int]
    salary_max: Optional[int]
    skills: List[str]


STRICT = {
    "strict_person": Person, "strict_calendar_event": CalendarEvent,
    "strict_math_reasoning": MathReasoning, "strict_research_paper": ResearchPaper,
    "strict_ui_component": UIComponent, "strict_moderation": ModerationResult,
    "strict_weather_query": WeatherQuery, "strict_order": Order, "strict_ner": NerResult,
    "strict_sentiment": Sentiment, "strict_todo_list": TodoList, "strict_pet_owner": PetOwner,
    "strict_sql_query": SqlQuery, "strict_invoice": ExtractedInvoice,
    "strict_translation": Translation, "strict_classification": Classification,
    "strict_movie_list": MovieList, "strict_linked_list": Node, "strict_thread": Thread,
    "strict_function_args": FunctionArgs, "strict_itinerary": Itinerary,
    "strict_matrix": Matrix, "strict_review": Review, "strict_chain_of_thought": ChainOfThought,
    "strict_email_draft": EmailDraft, "strict_patient": Patient,
    "strict_code_review": CodeReviewList, "strict_config": Config, "strict_quiz": Quiz,
    "strict_expression_tree": Expr, "strict_recipe": Recipe, "strict_job_posting": JobPosting,
}


# ---- Non-strict schemas, as services and other SDKs send them ----
class Profile(BaseModel):
    username: Annotated[str, Field(min_length=3, max_length=16)]
    age: Annotated[int, Field(ge=13, le=120)] = 18
    bio: Optional[str] = None
    tags: Annotated[List[str], Field(min_length=1, max_length=5)] = ["new"]
    score: Annotated[float, Field(ge=0, le=100)] = 0.0


class Event(BaseModel):
    id: uuid.UUID
    start: datetime.datetime
    day: datetime.date
    at: datetime.time
    attendees: List[str] = []


class TreeNode(BaseModel):
    name: str
    children: Optional[List["TreeNode"]] = None


class Product(BaseModel):
    sku: Annotated[str, Field(pattern=r"^[A-Z]{3}-\d{4}$")]
    price: Annotated[float, Field(gt=0)]
    stock: Annotated[int, Field(ge=0)]
    discount_percent: Annotated[int, Field(ge=0, lt=100)] = 0


class Measurement(BaseModel):
    sensor: str
    ratio: Annotated[float, Field(ge=0.5, le=9.75)]
    celsius: Annotated[float, Field(gt=-273.15)]
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0


NONSTRICT_PYDANTIC = {"profile_bounds": Profile, "event_formats": Event,
                      "measurement_decimal_bounds": Measurement,
                      "tree_optional_children": TreeNode, "product_pattern": Product}

HAND = {
    "json_object_any": {"type": "object"},
    "any_value": {},
    "top_level_array": {"type": "array", "items": {"type": "string"}},
    "top_level_array_of_objects": {
        "type": "array", "minItems": 1, "maxItems": 3,
        "items": {"type": "object", "properties": {"id": {"type": "integer"},
                                                   "ok": {"type": "boolean"}},
                  "required": ["id"]}},
    "enum_mixed_types": {"enum": ["auto", 0, 1.5, True, None, {"a": [1, 2]}, [3]]},
    "const_string": {"const": "fixed \"quoted\" value\n"},
    "boolean_only": {"type": "boolean"},
    "null_only": {"type": "null"},
    "number_bounds": {"type": "object", "properties": {
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
        "temperature": {"type": "number", "minimum": -40, "maximum": 60},
        "positive": {"type": "number", "exclusiveMinimum": 0},
        "negative": {"type": "number", "exclusiveMaximum": 0}},
        "required": ["probability", "temperature", "positive", "negative"],
        "additionalProperties": False},
    "number_decimal_bounds": {"type": "object", "properties": {
        "rate": {"type": "number", "minimum": 0.5, "maximum": 9.75},
        "discount": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.3},
        "delta": {"type": "number", "minimum": -2.5, "maximum": -0.125}},
        "required": ["rate", "discount", "delta"], "additionalProperties": False},
    "integer_bounds": {"type": "object", "properties": {
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "offset": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "exclusive": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 17},
        "year": {"type": "integer", "minimum": 1900},
        "neg": {"type": "integer", "maximum": -10}},
        "required": ["port", "offset", "exclusive", "year", "neg"]},
    "string_lengths": {"type": "object", "properties": {
        "code": {"type": "string", "minLength": 2, "maxLength": 2},
        "name": {"type": "string", "minLength": 1},
        "short": {"type": "string", "maxLength": 8}},
        "required": ["code", "name"]},
    "nested_arrays": {"type": "object", "properties": {
        "grid": {"type": "array", "items": {"type": "array", "items": {"type": "number"},
                                             "minItems": 2, "maxItems": 2}},
        "cube": {"type": "array", "items": {"type": "array", "items": {
            "type": "array", "items": {"type": "boolean"}}}}},
        "required": ["grid"]},
    "linked_list_definitions": {
        "$ref": "#/definitions/node",
        "definitions": {"node": {"type": "object", "properties": {
            "value": {"type": "string"},
            "next": {"anyOf": [{"$ref": "#/definitions/node"}, {"type": "null"}]}},
            "required": ["value", "next"], "additionalProperties": False}}},
    "recursive_root_ref": {"type": "object", "properties": {
        "name": {"type": "string"}, "parts": {"type": "array", "items": {"$ref": "#"}}},
        "required": ["name"]},
    "oneof_shapes": {"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"},
                                           "radius": {"type": "number", "minimum": 0}},
         "required": ["kind", "radius"], "additionalProperties": False},
        {"type": "object", "properties": {"kind": {"const": "rect"},
                                           "w": {"type": "number"}, "h": {"type": "number"}},
         "required": ["kind", "w", "h"], "additionalProperties": False}]},
    "anyof_primitives": {"anyOf": [{"type": "string", "maxLength": 10},
                                   {"type": "integer"}, {"type": "boolean"}]},
    "type_list_nullable": {"type": "object", "properties": {
        "nickname": {"type": ["string", "null"]},
        "count": {"type": ["integer", "null"], "minimum": 0}},
        "required": ["nickname", "count"], "additionalProperties": False},
    "optional_properties": {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"},
        "d": {"type": "null"}}, "required": ["c"]},
    "all_optional": {"type": "object", "properties": {
        "x": {"type": "integer"}, "y": {"type": "integer"}}},
    "additional_properties_true": {"type": "object", "properties": {"id": {"type": "string"}},
                                   "required": ["id"], "additionalProperties": True},
    "additional_properties_schema": {"type": "object", "properties": {},
                                     "additionalProperties": {"type": "number"}},
    "prefix_items_tuple": {"type": "array", "prefixItems": [
        {"type": "string"}, {"type": "integer"}, {"type": "boolean"}], "items": False},
    "prefix_items_rest": {"type": "array", "prefixItems": [{"const": "header"}],
                          "items": {"type": "integer"}, "maxItems": 4},
    "string_formats": {"type": "object", "properties": {
        "email": {"type": "string", "format": "email"},
        "uuid": {"type": "string", "format": "uuid"},
        "date": {"type": "string", "format": "date"},
        "time": {"type": "string", "format": "time"},
        "date_time": {"type": "string", "format": "date-time"}},
        "required": ["email", "uuid", "date", "time", "date_time"]},
    "string_patterns": {"type": "object", "properties": {
        "phone": {"type": "string", "pattern": "^\\+?[0-9]{1,3}-[0-9]{3}-[0-9]{4}$"},
        "slug": {"type": "string", "pattern": "^[a-z0-9]+(?:-[a-z0-9]+)*$"},
        "contains_at": {"type": "string", "pattern": "@"},
        "hex_color": {"type": "string", "pattern": "^#(?:[0-9a-fA-F]{3}){1,2}$"}},
        "required": ["phone", "slug", "contains_at", "hex_color"]},
    "string_enum": {"type": "string", "enum": ["alpha", "beta", "gamma delta", "ünïcödé"]},
    "allof_single": {"allOf": [{"$ref": "#/$defs/Base"}], "$defs": {"Base": {
        "type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}},
    "annotations_ignored": {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "urn:example:annot",
        "$comment": "annotations only", "title": "Annotated", "description": "d",
        "type": "object", "properties": {"v": {"type": "integer", "default": 3,
                                                "examples": [1, 2], "deprecated": True,
                                                "readOnly": True}},
        "required": ["v"]},
    "openai_tool_parameters": {"type": "object", "properties": {
        "location": {"type": "string", "description": "City and state, e.g. Paris, France"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]},
    "infer_object_without_type": {"properties": {"q": {"type": "string"}}, "required": ["q"]},
    "array_min_items_only": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
    "deep_nesting": {"type": "object", "properties": {"l1": {"type": "object", "properties": {
        "l2": {"type": "object", "properties": {"l3": {"type": "array", "items": {
            "type": "object", "properties": {"leaf": {"type": "string"}},
            "required": ["leaf"]}}}, "required": ["l3"]}}, "required": ["l2"]}},
        "required": ["l1"]},
}

INVALID = {
    "min_items_gt_max_items": ({"type": "array", "items": {"type": "integer"}, "minItems": 5,
                                "maxItems": 2}, "minItems"),
    "min_length_gt_max_length": ({"type": "string", "minLength": 9, "maxLength": 3},
                                 "minLength"),
    "minimum_gt_maximum": ({"type": "integer", "minimum": 10, "maximum": 1}, "minimum"),
    "unsupported_format": ({"type": "object", "properties": {"site": {
        "type": "string", "format": "uri"}}, "required": ["site"]}, "format"),
    "missing_ref": ({"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}},
                     "required": ["a"]}, "#/$defs/Missing"),
    "pattern_lookahead": ({"type": "string", "pattern": "^(?=.*[0-9]).{8,}$"}, "lookahead"),
    "unknown_type": ({"type": "strng"}, "strng"),
    "not_keyword": ({"type": "object", "properties": {"a": {"not": {"type": "null"}}}},
                    "not"),
    "if_then": ({"type": "object", "if": {"properties": {"a": {"const": 1}}},
                 "then": {"required": ["b"]}}, "if"),
    "pattern_properties": ({"type": "object", "patternProperties": {"^x-": {"type": "string"}}},
                           "patternProperties"),
    "unique_items": ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
                     "uniqueItems"),
    "multiple_of": ({"type": "integer", "multipleOf": 5}, "multipleOf"),
    "empty_enum": ({"enum": []}, "enum"),
    "remote_ref": ({"$ref": "https://example.com/schema.json"}, "https://example.com"),
    "pattern_backreference": ({"type": "string", "pattern": "^(a+)\\1$"}, "backreference"),
    "dependent_required": ({"type": "object", "properties": {"a": {"type": "string"}},
                            "dependentRequired": {"a": ["b"]}}, "dependentRequired"),
    "exclusive_max_le_min": ({"type": "integer", "minimum": 5, "exclusiveMaximum": 5},
                             "exclusiveMaximum"),
    "not_json": ("{\"type\": \"object\",", "JSON"),
    "schema_not_object": ([1, 2], "schema"),
    "allof_multiple": ({"allOf": [{"type": "object"}, {"required": ["a"]}]}, "allOf"),
}


def write(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        if isinstance(obj, str):
            f.write(obj + "\n")
        else:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")


def main():
    out = os.path.join(HERE, "schemas")
    for name, model in STRICT.items():
        write(os.path.join(out, name + ".json"), strict(model))
    for name, model in NONSTRICT_PYDANTIC.items():
        write(os.path.join(out, name + ".json"), model.model_json_schema())
    for name, schema in HAND.items():
        write(os.path.join(out, name + ".json"), schema)
    bad = os.path.join(HERE, "invalid")
    for name, (schema, reason) in INVALID.items():
        write(os.path.join(bad, name + ".json"), schema)
        with open(os.path.join(bad, name + ".reason.txt"), "w") as f:
            f.write(reason + "\n")


if __name__ == "__main__":
    main()
